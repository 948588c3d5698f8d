-- Each sale joined to the store row that was valid when it was sold:
-- valid_from <= sold_at < valid_to, where an empty valid_to (NULL) means
-- "still valid". julianday() compares ISO-8601 times whatever their
-- precision or offset, and gives NULL (no match: 'unknown') for garbage.
-- A sale does not change once made: a second delivery rewrites the row.
-- PostgreSQL runs 10_sales.postgres.sql: it has no julianday().

insert into sales_curated (sale_id, store_id, amount, sold_at, region_at_sale, _kafka_offset)
select
  b.sale_id,
  b.store_id,
  b.amount,
  b.sold_at,
  coalesce(st.region, 'unknown'),
  b._kafka_offset
from (
  select
    *,
    row_number() over (partition by sale_id order by _kafka_offset desc) as copy_rank
  from batch
  where sale_id is not null and store_id is not null and sold_at is not null
) as b
left join stores as st
  on st.store_id = b.store_id
 and julianday(st.valid_from) <= julianday(b.sold_at)
 and (st.valid_to is null or julianday(b.sold_at) < julianday(st.valid_to))
where b.copy_rank = 1
on conflict (sale_id) do update set
  store_id       = excluded.store_id,
  amount         = excluded.amount,
  sold_at        = excluded.sold_at,
  region_at_sale = excluded.region_at_sale,
  _kafka_offset  = excluded._kafka_offset;
