"""Test helpers shared by every test package: a fake upstream on a loopback port, a
`run_proxy()` that starts `vm-proxy serve` as a subprocess, and the recorded exchanges."""
