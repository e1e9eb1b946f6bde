-- Baseline schema of the trading system at release 3.2.1.
CREATE TABLE accounts (
    account_id   text PRIMARY KEY,
    name         text NOT NULL,
    is_test      boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE strategies (
    strategy_id  text PRIMARY KEY,
    description  text NOT NULL DEFAULT '',
    active       boolean NOT NULL DEFAULT false,
    size_pct     smallint NOT NULL DEFAULT 0 CHECK (size_pct BETWEEN 0 AND 100)
);

CREATE TABLE orders (
    order_id         bigserial PRIMARY KEY,
    client_order_id  text NOT NULL UNIQUE,
    account_id       text NOT NULL REFERENCES accounts (account_id),
    strategy_id      text REFERENCES strategies (strategy_id),
    symbol           text NOT NULL,
    side             text NOT NULL CHECK (side IN ('buy', 'sell')),
    qty              bigint NOT NULL CHECK (qty > 0),
    order_type       text NOT NULL CHECK (order_type IN ('limit', 'market')),
    price            numeric(18, 6),
    status           text NOT NULL,
    filled_qty       bigint NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_account_created_idx ON orders (account_id, created_at);

CREATE TABLE fills (
    fill_id     bigserial PRIMARY KEY,
    order_id    bigint NOT NULL REFERENCES orders (order_id),
    qty         bigint NOT NULL CHECK (qty > 0),
    price       numeric(18, 6) NOT NULL,
    filled_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fills_order_idx ON fills (order_id);

CREATE TABLE positions (
    account_id   text NOT NULL REFERENCES accounts (account_id),
    symbol       text NOT NULL,
    qty          bigint NOT NULL DEFAULT 0,
    avg_price    numeric(18, 6) NOT NULL DEFAULT 0,
    realized_pnl numeric(18, 6) NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, symbol)
);

INSERT INTO accounts (account_id, name, is_test) VALUES ('TEST-SMOKE-01', 'Smoke test account', true);
