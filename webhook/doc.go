// Package webhook signs, verifies and safely delivers mocd's webhooks.
//
// mocd follows the Standard Webhooks specification
// (https://www.standardwebhooks.com): every delivery carries the headers
// webhook-id, webhook-timestamp and webhook-signature, where the signature is
// "v1," followed by the base64 HMAC-SHA256 of "id.timestamp.body" keyed with
// the endpoint's secret ("whsec_" + base64 key). Any Standard Webhooks library
// can therefore verify a delivery; this package is the one a Go receiver
// imports, and the one mocd's own worker signs with, so both sides share one
// implementation. It imports nothing else from mocd on purpose.
//
// A receiver verifies the raw body before decoding it, and de-duplicates by
// webhook-id because a delivery that timed out on mocd's side is sent again
// with the same id:
//
//	func handle(w http.ResponseWriter, r *http.Request) {
//		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
//		if err != nil {
//			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
//			return
//		}
//		if err := webhook.Verify(os.Getenv("WEBHOOK_SECRET"), r.Header, body); err != nil {
//			http.Error(w, "bad signature", http.StatusUnauthorized)
//			return
//		}
//		var ev webhook.Event
//		if err := json.Unmarshal(body, &ev); err != nil {
//			http.Error(w, "bad event", http.StatusBadRequest)
//			return
//		}
//		// ... skip if r.Header.Get(webhook.HeaderID) was seen before, then
//		// act on ev.Type and ev.Data ...
//		w.WriteHeader(http.StatusNoContent)
//	}
//
// The rest of the package serves the sending side: the retry schedule
// ([NextDelay], [ParseRetryAfter]), encryption of endpoint secrets at rest
// ([SecretBox]), and the guard against server-side request forgery that
// keeps deliveries away from private networks ([ValidateURL],
// [NewHTTPClient], [IsForbiddenIP]).
package webhook
