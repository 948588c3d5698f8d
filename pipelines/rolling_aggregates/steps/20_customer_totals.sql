-- Maintain customer_totals: add what each new version contributes and
-- subtract what the version it replaces contributed. This must run before
-- payments is updated (old_* come from there). A redelivered payment adds
-- and subtracts the same amount.
--
-- round(cast(x as numeric), 2): PostgreSQL rounds to decimals only a numeric;
-- SQLite's cast leaves a REAL as it is, so its round() sees the same value.

insert into customer_totals (customer_id, paid_payments, revenue)
select customer_id, sum(paid_payments), sum(revenue)
from (
  select customer_id, 1 as paid_payments, coalesce(amount, 0) as revenue
  from stg_payments
  where status = 'paid'
  union all
  select old_customer_id, -1, -coalesce(old_amount, 0)
  from stg_payments
  where old_status = 'paid'
) as changes
group by customer_id
on conflict (customer_id) do update set
  paid_payments = customer_totals.paid_payments + excluded.paid_payments,
  revenue       = round(cast(customer_totals.revenue + excluded.revenue as numeric), 2);
