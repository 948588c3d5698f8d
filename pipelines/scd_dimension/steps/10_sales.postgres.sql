-- PostgreSQL's version of 10_sales.sql (keep the two in step). Each sale
-- joined to the store row that was valid when it was sold: valid_from <=
-- sold_at < valid_to, where an empty valid_to (NULL) means "still valid".
-- PostgreSQL has no julianday(): times are compared as sluice's epoch_ms(),
-- which reads ISO-8601 whatever its precision or offset. julianday() gives
-- NULL for garbage where epoch_ms() fails the batch, so only text shaped like
-- ISO-8601 is read; the rest is NULL (no match: 'unknown'), as on SQLite.
-- A sale does not change once made: a second delivery rewrites the row.

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
    case when sold_at ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)?)?$' then epoch_ms(sold_at) end as sold_ms,
    row_number() over (partition by sale_id order by _kafka_offset desc) as copy_rank
  from batch
  where sale_id is not null and store_id is not null and sold_at is not null
) as b
left join (
  select
    store_id,
    region,
    valid_to,
    case when valid_from ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)?)?$' then epoch_ms(valid_from) end as from_ms,
    case when valid_to ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)?)?$' then epoch_ms(valid_to) end as to_ms
  from stores
) as st
  on st.store_id = b.store_id
 and st.from_ms <= b.sold_ms
 and (st.valid_to is null or b.sold_ms < st.to_ms)
where b.copy_rank = 1
on conflict (sale_id) do update set
  store_id       = excluded.store_id,
  amount         = excluded.amount,
  sold_at        = excluded.sold_at,
  region_at_sale = excluded.region_at_sale,
  _kafka_offset  = excluded._kafka_offset;
