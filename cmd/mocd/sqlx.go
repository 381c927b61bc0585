package main

import "github.com/jmoiron/sqlx"

type (
	sqlxTx  = sqlx.Tx
	sqlxExt = sqlx.ExtContext
)
