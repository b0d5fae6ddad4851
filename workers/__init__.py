"""RQ jobs and queue wiring. Jobs take ids and call into ``outreach``; they can run twice."""
