package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/jmoiron/sqlx"

	"github.com/myopenclaw/mocd/apikey"
	"github.com/myopenclaw/mocd/config"
	"github.com/myopenclaw/mocd/plan"
	"github.com/myopenclaw/mocd/store"
)

const adminUsage = `usage:
  mocd admin create-account --email E --plan pro|business|free [--json]
  mocd admin set-plan --account ID --plan pro|business|free
  mocd admin create-key --account ID [--name N] [--scopes full|read-only|write|scope,scope…] [--json]`

// runAdmin runs operator commands against DATABASE_URL. They mint tokens
// the api must be able to check, so they need the api's MOC_PEPPER; mocd
// dev admin (mode dev) uses mocd dev's dev pepper instead.
func runAdmin(ctx context.Context, mode config.Mode, args []string, getenv env, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(adminUsage)
	}
	cfg, err := loadConfig(mode, getenv, config.Config.RequirePepper)
	if err != nil && mode != config.ModeDev && getenv("MOC_PEPPER") == "" {
		return fmt.Errorf("%w; against mocd dev, run `mocd dev admin …`", err)
	}
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer st.Close()

	fs := flag.NewFlagSet("admin "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	email := fs.String("email", "", "account email")
	planName := fs.String("plan", "", "plan: free, pro or business")
	account := fs.String("account", "", "account id")
	name := fs.String("name", "admin", "key name")
	scopes := fs.String("scopes", apikey.PresetFull, "scopes or a preset")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("%v\n%s", err, adminUsage)
	}

	switch args[0] {
	case "create-account":
		if *email == "" || !plan.Valid(*planName) {
			return errors.New("create-account needs --email and --plan pro|business|free\n" + adminUsage)
		}
		var out struct {
			AccountID string `json:"account_id"`
			Token     string `json:"token"`
		}
		err := st.WithTx(ctx, func(tx *sqlx.Tx) error {
			a, err := store.CreateAccount(ctx, tx, *email, *planName)
			if err != nil {
				return err
			}
			out.AccountID = a.ID
			out.Token, err = mintKey(ctx, tx, []byte(cfg.Pepper), a.ID, "admin", []string{apikey.PresetFull})
			return err
		})
		if errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("an account with email %s already exists", *email)
		}
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(out)
		}
		fmt.Fprintf(stdout, "account %s (%s plan)\ntoken   %s\n(the token is shown once; keep it secret)\n", out.AccountID, *planName, out.Token)
		return nil

	case "set-plan":
		if *account == "" || !plan.Valid(*planName) {
			return errors.New("set-plan needs --account and --plan pro|business|free\n" + adminUsage)
		}
		if err := store.SetPlan(ctx, st.DB, *account, *planName); err != nil {
			return fmt.Errorf("set plan of %s: %w", *account, err)
		}
		fmt.Fprintf(stdout, "account %s is now on the %s plan\n", *account, *planName)
		return nil

	case "create-key":
		if *account == "" {
			return errors.New("create-key needs --account\n" + adminUsage)
		}
		if _, err := store.GetAccount(ctx, st.DB, *account); err != nil {
			return fmt.Errorf("account %s: %w", *account, err)
		}
		token, err := mintKey(ctx, st.DB, []byte(cfg.Pepper), *account, *name, strings.Split(*scopes, ","))
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(map[string]string{"account_id": *account, "token": token})
		}
		fmt.Fprintf(stdout, "token %s\n(the token is shown once; keep it secret)\n", token)
		return nil
	}
	return fmt.Errorf("unknown admin command %q\n%s", args[0], adminUsage)
}

func mintKey(ctx context.Context, db sqlx.ExtContext, pepper []byte, accountID, name string, scopeList []string) (string, error) {
	scopes, err := apikey.Expand(scopeList)
	if err != nil {
		return "", err
	}
	tok := apikey.Mint(apikey.NewKeyID(), pepper)
	_, err = store.InsertKey(ctx, db, store.Key{
		ID: tok.KeyID, AccountID: accountID, Name: name, Prefix: tok.Prefix, SecretHash: tok.Hash, Scopes: scopes,
	})
	return tok.Plain, err
}
