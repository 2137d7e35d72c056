-- The W3C traceparent of the request that caused each event, so that the
-- consumer's work joins the request's trace. NULL when tracing is off.
ALTER TABLE outbox ADD COLUMN trace_parent TEXT;
