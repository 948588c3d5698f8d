create table if not exists invoices (
  invoice_id        text primary key,
  customer_id       text,
  amount            real,
  issued_at         text,
  issued_month      text,
  _kafka_timestamp  integer not null,
  _kafka_offset     integer not null
);

create index if not exists invoices_by_month on invoices(issued_month);

create table if not exists monthly_revenue (
  month     text primary key,
  invoices  integer not null,
  revenue   real not null
);
