-- Saga workers poll "steps due now"; done steps (the vast majority) stay out of the index.
CREATE INDEX CONCURRENTLY IF NOT EXISTS saga_steps_due_idx ON saga_steps (status, next_attempt_at)
    WHERE status IN ('pending', 'failed');
