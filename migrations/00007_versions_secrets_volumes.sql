-- +goose Up
-- The OpenClaw release an instance runs, and its data volume.
--   version, image: what the machine runs; changed only by a create or an
--     upgrade that came up healthy. The image is kept beside the version so
--     that a rollback never depends on the operator's catalog still listing
--     the old version.
--   volume_gb: the size of the instance's Fly volume, from its plan at create.
--   fly_volume_id: recorded the moment the volume exists, like the machine.
ALTER TABLE instances
    ADD COLUMN version       text    NOT NULL DEFAULT '',
    ADD COLUMN image         text    NOT NULL DEFAULT '',
    ADD COLUMN volume_gb     integer NOT NULL DEFAULT 0,
    ADD COLUMN fly_volume_id text;

-- What an instance.upgrade works towards, and what it leaves for a worker
-- that resumes it after a crash:
--   version, image: the target, resolved when the call was accepted;
--   from_state: the machine's state before the first attempt touched it
--     (started or stopped), so the instance ends as it was;
--   lease_nonce: the Fly lease the operation holds, so a rescuer extends it
--     instead of waiting for it to expire;
--   rollback_reason: set when a rollback begins, so a resumed operation
--     finishes the rollback rather than trying the upgrade again.
ALTER TABLE operations
    ADD COLUMN version         text,
    ADD COLUMN image           text,
    ADD COLUMN from_state      text,
    ADD COLUMN lease_nonce     text,
    ADD COLUMN rollback_reason text;

-- Secrets are write-only: the value is sealed with MOC_SECRET_KEY
-- (AES-256-GCM) and only the worker opens it, to put it in the machine's
-- environment; digest is a keyed HMAC that tells a client whether a value
-- changed without revealing it. Rows go with the instance's delete.
CREATE TABLE instance_secrets (
    instance_id text        NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    name        text        NOT NULL,
    sealed      bytea       NOT NULL,
    digest      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance_id, name)
);

-- +goose Down
DROP TABLE instance_secrets;
ALTER TABLE operations
    DROP COLUMN rollback_reason,
    DROP COLUMN lease_nonce,
    DROP COLUMN from_state,
    DROP COLUMN image,
    DROP COLUMN version;
ALTER TABLE instances
    DROP COLUMN fly_volume_id,
    DROP COLUMN volume_gb,
    DROP COLUMN image,
    DROP COLUMN version;
