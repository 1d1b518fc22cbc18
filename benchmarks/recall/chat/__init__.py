"""The harness for chat datasets: dialogue, LongMemEval; model behaviours, baselines, driver."""
