package worker

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/myopenclaw/mocd/store"
)

const (
	// DefaultRetention is how long audit entries, finished operations,
	// finished webhook deliveries and feed events are kept (MOC_RETENTION).
	DefaultRetention = 90 * 24 * time.Hour
	// RetentionInterval spaces the pruning passes. Rows therefore live at
	// most this much longer than the retention.
	RetentionInterval = time.Hour
	// IdempotencyKeyTTL is how long an Idempotency-Key is remembered; API.md
	// promises at least 24 hours.
	IdempotencyKeyTTL = 24 * time.Hour
	// pruneBatch is how many rows one DELETE removes: each statement holds
	// its row locks for milliseconds and no lock blocks the table.
	pruneBatch = 1000
)

// pruneFunc deletes up to batch rows older than cutoff and says how many.
type pruneFunc func(ctx context.Context, db sqlx.ExtContext, cutoff time.Time, batch int) (int, error)

// prune is the periodic retention job: it deletes audit entries, finished
// operations and finished webhook deliveries older than the retention, and
// Idempotency-Keys older than IdempotencyKeyTTL, each in batches until none
// is left. One table failing does not keep the others from being pruned.
func (w *Worker) prune(ctx context.Context) error {
	retention := w.opts.Retention
	if retention <= 0 {
		retention = DefaultRetention
	}
	now := time.Now()
	steps := []struct {
		what   string
		cutoff time.Time
		fn     pruneFunc
	}{
		{"audit entries", now.Add(-retention), store.PruneAudit},
		{"operations", now.Add(-retention), store.PruneOperations},
		{"webhook deliveries", now.Add(-retention), store.PruneWebhookDeliveries},
		{"feed events", now.Add(-retention), store.PruneEvents},
		{"idempotency keys", now.Add(-IdempotencyKeyTTL), store.PruneIdempotencyKeys},
	}
	var errs []error
	for _, s := range steps {
		n, err := pruneAll(ctx, w.st.DB, s.fn, s.cutoff)
		if n > 0 {
			w.log.InfoContext(ctx, "retention: pruned", slog.String("what", s.what), slog.Int("rows", n), slog.Time("older_than", s.cutoff))
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := w.resealSecrets(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// pruneAll calls fn until a batch comes back short, and returns the total.
func pruneAll(ctx context.Context, db sqlx.ExtContext, fn pruneFunc, cutoff time.Time) (int, error) {
	total := 0
	for {
		n, err := fn(ctx, db, cutoff, pruneBatch)
		total += n
		if err != nil || n < pruneBatch {
			return total, err
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
}

// resealSecrets re-seals, under the current MOC_SECRET_KEY, every webhook
// signing secret and instance secret that only a previous key
// (MOC_SECRET_KEY_PREVIOUS) opens, so that an operator can drop the
// previous key after one pass. It runs with the retention job; a secret no
// key opens is counted and logged, never deleted.
func (w *Worker) resealSecrets(ctx context.Context) error {
	box := w.opts.Webhooks.SecretBox
	if box == nil {
		return nil
	}
	for _, set := range []store.SealedSet{store.WebhookSecrets, store.InstanceSecrets} {
		resealed, unopenable := 0, 0
		after := ""
		for {
			page, err := store.SealedSecrets(ctx, w.st.DB, set, after, pruneBatch)
			if err != nil {
				return err
			}
			for _, s := range page {
				out, changed, err := box.Reseal(s.Sealed)
				if err != nil {
					unopenable++
					continue
				}
				if changed {
					if err := store.ResealSecret(ctx, w.st.DB, set, s.ID, s.Sealed, out); err != nil {
						return err
					}
					resealed++
				}
			}
			if len(page) < pruneBatch {
				break
			}
			after = page[len(page)-1].ID
		}
		if resealed > 0 {
			w.log.InfoContext(ctx, "re-sealed under the current MOC_SECRET_KEY", slog.String("what", set.Name), slog.Int("secrets", resealed))
		}
		if unopenable > 0 {
			w.log.WarnContext(ctx, "neither MOC_SECRET_KEY nor MOC_SECRET_KEY_PREVIOUS opens these secrets", slog.String("what", set.Name), slog.Int("secrets", unopenable))
		}
	}
	return nil
}
