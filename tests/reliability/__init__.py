"""The tests of docs/guarantees.md that had no home yet (fast tier), and the slow tier runner:
`python -m tests.reliability --tier slow`."""
