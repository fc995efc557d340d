"""The run contract shared by every job: start, stages on Ray, write, count, record, resume."""
