"""Neural building blocks shared by two or more models: attention blocks and training losses."""
