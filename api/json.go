package api

import (
	ginjson "github.com/gin-gonic/gin/codec/json"
	gojson "github.com/goccy/go-json"
)

// marshalJSON is how the api encodes its answers: go-json, which writes the
// very bytes encoding/json writes (TestAnswersEncodeAsEncodingJSON holds it
// to that for every wire object) for a quarter of the CPU. On a page of 50
// operations encoding/json was the api's largest cost after the database
// driver (issue 18). Decoding stays with encoding/json: request bodies are
// small, and their error messages are part of what a 400 says.
func marshalJSON(v any) ([]byte, error) { return gojson.Marshal(v) }

// Gin renders c.JSON and c.AbortWithStatusJSON through its codec's API,
// which Gin lets a program replace; only Marshal changes.
func init() { ginjson.API = encodeFast{ginjson.API} }

type encodeFast struct{ ginjson.Core }

func (encodeFast) Marshal(v any) ([]byte, error) { return marshalJSON(v) }
