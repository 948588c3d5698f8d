-- PostgreSQL's version of 10_invoices.sql (keep the two in step). The month
-- is the first 7 characters of sluice's date_trunc('month', ...) instead of
-- strftime('%Y-%m', ...), which PostgreSQL lacks. strftime gives NULL for
-- text that is no timestamp, where date_trunc fails the batch: only text
-- shaped like ISO-8601 is read, the rest has no month (NULL), as on SQLite.

-- The latest version of each invoice. The version stored is replaced by a
-- newer one OR BY THE SAME ONE read again (>=): after `sluice reset`, the
-- replayed messages are rewritten with the current SQL.

drop table if exists stg_invoices;

create temp table stg_invoices as
select
  invoice_id,
  customer_id,
  amount_cents / 100.0            as amount,
  issued_at,
  case
    when issued_at ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)?)?$'
    then left(date_trunc('month', issued_at), 7)
  end                             as issued_month,
  _kafka_timestamp,
  _kafka_offset
from (
  select
    *,
    row_number() over (partition by invoice_id order by _kafka_timestamp desc, _kafka_offset desc) as version_rank
  from batch
  where invoice_id is not null
) as versions
where version_rank = 1;

-- Months to recompute: where the invoices were and where they are now.
drop table if exists touched_months;

create temp table touched_months as
select i.issued_month as month
from invoices as i
join stg_invoices as s on s.invoice_id = i.invoice_id
union
select issued_month from stg_invoices;

insert into invoices (invoice_id, customer_id, amount, issued_at, issued_month, _kafka_timestamp, _kafka_offset)
select invoice_id, customer_id, amount, issued_at, issued_month, _kafka_timestamp, _kafka_offset
from stg_invoices
where true  -- lets SQLite parse the ON CONFLICT clause after a SELECT
on conflict (invoice_id) do update set
  customer_id      = excluded.customer_id,
  amount           = excluded.amount,
  issued_at        = excluded.issued_at,
  issued_month     = excluded.issued_month,
  _kafka_timestamp = excluded._kafka_timestamp,
  _kafka_offset    = excluded._kafka_offset
where (excluded._kafka_timestamp, excluded._kafka_offset)
   >= (invoices._kafka_timestamp, invoices._kafka_offset);
