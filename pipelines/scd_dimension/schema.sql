-- PostgreSQL runs schema.postgres.sql, and creates the view below in
-- steps/00_current_region_view.postgres.sql (it reads the seed table stores).

-- Each sale with the store's region at the time of the sale (type 2: the
-- value is fixed when the sale is processed).
create table if not exists sales_curated (
  sale_id        text primary key,
  store_id       text not null,
  amount         real,
  sold_at        text not null,
  region_at_sale text not null,
  _kafka_offset  integer not null
);

-- Each sale with the store's current region (type 1: joined when queried,
-- so a reloaded seed applies to past sales too). Views are recreated at
-- every start, so changing one needs no migration.
drop view if exists sales_current_region;

create view sales_current_region as
select s.sale_id, s.store_id, s.amount, s.sold_at, coalesce(st.region, 'unknown') as region
from sales_curated as s
left join stores as st on st.store_id = s.store_id and st.valid_to is null;
