-- PostgreSQL's version of schema.sql (keep the two in step): the same table,
-- in bigint and double precision (what SQLite's INTEGER and REAL hold;
-- PostgreSQL's integer and real are 4 bytes).
--
-- The view sales_current_region is not here. It reads the seed table
-- stores, which sluice loads at the first batch, after this file: SQLite
-- looks a view's tables up when it is queried, PostgreSQL when it is
-- created. steps/00_current_region_view.postgres.sql creates it in the
-- batch, once stores is there.

-- Each sale with the store's region at the time of the sale (type 2: the
-- value is fixed when the sale is processed).
create table if not exists sales_curated (
  sale_id        text primary key,
  store_id       text not null,
  amount         double precision,
  sold_at        text not null,
  region_at_sale text not null,
  _kafka_offset  bigint not null
);
