"""benchmarks.report: one README row per result JSON."""

from benchmarks.report import table_row


def result(**extra) -> dict:
    figures = {
        "rayjobs_e2e": 9.0,
        "rayjobs_e2e_with_ray_start": 8.0,
        "peak_driver_mib": 900,
        "peak_worker_mib": 1200,
    }
    return {
        "time": "2026-12-01T14:00:00",
        "job": "embed_images",
        "model": "clip",
        "device": "NVIDIA H200",
        "rows": 30000,
        "batch_size": 256,
        "figures": {**figures, **extra.pop("figures", {})},
        "ratios": {"e2e/min_ceiling": 0.5},
        **extra,
    }


def test_the_row_names_the_decode_place_and_both_decode_ceilings():
    row = table_row(
        result(
            overrides=["model.decode=device", "runtime.num_cpus=16"],
            figures={"decode_ceiling": 2170.0, "device_decode_ceiling": 5400.0},
        )
    )
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1] == "embed_images model.decode=device"  # other overrides stay in the JSON
    assert cells[7] == "2,170.0 (in the actor: 5,400.0)"
    assert cells[13] == "min_ceiling 0.50"


def test_a_plain_row_keeps_its_unit_and_one_decode_figure():
    row = table_row(result(unit="captions/s", figures={"decode_ceiling": 139.4}))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert (cells[1], cells[7]) == ("embed_images (captions/s)", "139.4")
