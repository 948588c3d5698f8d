-- PostgreSQL's version of 10_stg_payments.sql (keep the two in step). The day
-- is the first 10 characters of sluice's date_trunc('day', ...) instead of
-- date(), which PostgreSQL has for timestamps only. date() gives NULL for
-- text that is no timestamp, where date_trunc fails the batch: only text
-- shaped like ISO-8601 is read, the rest has no day (NULL), as on SQLite.

-- stg_payments: the versions in this batch that change a payment (newer
-- than the stored one, by broker timestamp then offset), each with the
-- stored version it replaces (old_*: NULL for a new payment).

drop table if exists stg_payments;

create temp table stg_payments as
select
  p.payment_id,
  p.customer_id,
  p.amount,
  p.status,
  p.paid_at,
  case
    when p.paid_at ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)?)?$'
    then left(date_trunc('day', p.paid_at), 10)
  end                 as paid_day,
  p._kafka_timestamp,
  p._kafka_offset,
  old.customer_id     as old_customer_id,
  old.amount          as old_amount,
  old.status          as old_status,
  old.paid_day        as old_paid_day
from (
  select
    *,
    row_number() over (
      partition by payment_id
      order by _kafka_timestamp desc, _kafka_offset desc
    ) as version_rank
  from batch
  where payment_id is not null and customer_id is not null
) as p
left join payments as old on old.payment_id = p.payment_id
where p.version_rank = 1
  and (old.payment_id is null
       or (p._kafka_timestamp, p._kafka_offset) > (old._kafka_timestamp, old._kafka_offset));
