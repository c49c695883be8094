"""Helpers shared by every test tier (and the benchmarks): ocsd as a subprocess, independent
protocol clients, a TCP proxy that cuts stores, the balance-engine fixtures.  No tests here."""
