-- bigint and double precision: what SQLite's INTEGER and REAL hold, on both
-- engines (PostgreSQL's integer and real are 4 bytes; SQLite gives these
-- names INTEGER and REAL affinity).

create table if not exists invoices (
  invoice_id        text primary key,
  customer_id       text,
  amount            double precision,
  issued_at         text,
  issued_month      text,
  _kafka_timestamp  bigint not null,
  _kafka_offset     bigint not null
);

create index if not exists invoices_by_month on invoices(issued_month);

create table if not exists monthly_revenue (
  month     text primary key,
  invoices  bigint not null,
  revenue   double precision not null
);
