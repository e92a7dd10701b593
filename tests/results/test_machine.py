"""The machine a run ran on (uae.results.machine): described here, labelled for tables from what results.json stored."""

from __future__ import annotations


def test_machine_label_for_stored_descriptions() -> None:
    from uae.results.machine import describe, label

    assert label({"cpu_count": 2, "processor": "x86_64", "gpu": None}) == "CPU (x86_64, 2 cores)"  # before cpu_model
    assert label({"cpu_count": 16, "cpu_model": "AMD EPYC 9454", "gpu": "NVIDIA H100 80GB HBM3"}) == "NVIDIA H100 80GB HBM3"
    here = describe()
    assert here["cpu_count"] and here["cpu_model"] and here["torch_threads"] >= 1
