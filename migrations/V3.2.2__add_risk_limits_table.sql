-- Release 3.2.2: risk limits move from a YAML file into the database.
CREATE TABLE risk_limits (
    scope              text PRIMARY KEY,          -- strategy id, account id or 'default'
    max_position_size  bigint NOT NULL CHECK (max_position_size > 0),
    max_loss_per_day   numeric(18, 2) NOT NULL CHECK (max_loss_per_day > 0),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    updated_by         text NOT NULL DEFAULT current_user
);

INSERT INTO risk_limits (scope, max_position_size, max_loss_per_day) VALUES
    ('default', 1000, 10000),
    ('TEST-SMOKE-01', 500, 5000),
    ('MM_EQ_001', 10000, 50000);
