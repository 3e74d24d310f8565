"""The `minigrad` command: demo, train, sample, viz, gradcheck, bench."""
