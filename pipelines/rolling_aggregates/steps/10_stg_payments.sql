-- stg_payments: the versions in this batch that change a payment (newer
-- than the stored one, by broker timestamp then offset), each with the
-- stored version it replaces (old_*: NULL for a new payment).
-- PostgreSQL runs 10_stg_payments.postgres.sql: it has no date(text).

drop table if exists stg_payments;

create temp table stg_payments as
select
  p.payment_id,
  p.customer_id,
  p.amount,
  p.status,
  p.paid_at,
  date(p.paid_at)     as paid_day,
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
