-- The rules' inbox becomes a queue of batches: one row per slice of up to 250 new health
-- samples (a JSON array of [device_id, epoch, seq, collected_at_ms]) instead of one row
-- per sample. The ingest transaction writes one small row per 250 samples instead of two
-- B-tree entries per sample, and the rules delete a row per slice. Same guarantee: the
-- row is written in the ingest transaction and deleted in the one that evaluates it.
-- Keep this file equivalent to ../postgres/0007_rule_queue.sql.
CREATE TABLE rule_queue (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    samples TEXT NOT NULL
);

-- Samples still waiting in the old inbox move over, 250 to a row, in collection order.
INSERT INTO rule_queue (samples)
SELECT json_group_array(json_array(device_id, epoch, seq, collected_at_ms))
FROM (
    SELECT device_id, epoch, seq, collected_at_ms,
           (row_number() OVER (ORDER BY collected_at_ms, device_id, epoch, seq) - 1) / 250 AS slice
    FROM rule_inbox
)
GROUP BY slice
ORDER BY slice;

DROP TABLE rule_inbox;
