package store

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/myopenclaw/mocd/id"
)

// Account is a customer account.
type Account struct {
	ID        string    `db:"id"`
	Email     string    `db:"email"`
	Plan      string    `db:"plan"`
	CreatedAt time.Time `db:"created_at"`
	UpdatedAt time.Time `db:"updated_at"`
}

// CreateAccount inserts an account with a fresh id.
func CreateAccount(ctx context.Context, db sqlx.ExtContext, email, plan string) (Account, error) {
	const q = `INSERT INTO accounts (id, email, plan) VALUES ($1, $2, $3)
		RETURNING id, email, plan, created_at, updated_at`
	var a Account
	err := sqlx.GetContext(ctx, db, &a, q, id.New(id.Account), email, plan)
	return a, mapErr(err)
}

// GetAccount reads one account.
func GetAccount(ctx context.Context, db sqlx.ExtContext, accountID string) (Account, error) {
	const q = `SELECT id, email, plan, created_at, updated_at FROM accounts WHERE id = $1`
	var a Account
	err := sqlx.GetContext(ctx, db, &a, q, accountID)
	return a, mapErr(err)
}

// SetPlan changes an account's plan.
func SetPlan(ctx context.Context, db sqlx.ExtContext, accountID, plan string) error {
	const q = `UPDATE accounts SET plan = $2, updated_at = now() WHERE id = $1`
	return execOne(ctx, db, q, accountID, plan)
}
