-- Store the new versions (10_stg_payments kept only newer ones).

insert into payments (payment_id, customer_id, amount, status, paid_at, paid_day, _kafka_timestamp, _kafka_offset)
select payment_id, customer_id, amount, status, paid_at, paid_day, _kafka_timestamp, _kafka_offset
from stg_payments
where true  -- lets SQLite parse the ON CONFLICT clause after a SELECT
on conflict (payment_id) do update set
  customer_id      = excluded.customer_id,
  amount           = excluded.amount,
  status           = excluded.status,
  paid_at          = excluded.paid_at,
  paid_day         = excluded.paid_day,
  _kafka_timestamp = excluded._kafka_timestamp,
  _kafka_offset    = excluded._kafka_offset;
