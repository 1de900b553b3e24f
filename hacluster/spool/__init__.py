"""The store tier's spool: owner marker with the fencing token, Maildir-safe writes, and the
per-message Maildir replicator (receiver on the standby, sender on the holder) used by the
`spool` resource (hacluster.resources.spool) in its `shared` and `mirrored` modes."""
