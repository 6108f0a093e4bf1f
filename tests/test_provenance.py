"""Issue 26: provenance. A run records the sha256 of its model's weight files and of its data file(s) beside the
package versions and code commit; a changed data row changes the hash; merging runs whose files differ names it."""

import hashlib
import json
from pathlib import Path

import pytest

from tunebench.models import base_model_path
from tunebench.provenance import data_provenance, model_provenance
from tunebench.results import differences


@pytest.mark.e2e
def test_a_run_records_the_hashes_of_its_model_and_data(smoke_run):
    data = json.loads((smoke_run / "results.json").read_text())
    prov = data["provenance"]
    folder = base_model_path(data["config"]["model"]["name"])
    weights = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).glob("*.safetensors"))}
    assert weights and prov["model"]["sha256"] == weights
    assert list(prov["data"]["sha256"]) == ["xsum-sample.jsonl"]
    assert data["environment"]["packages"]["torch"] and "git_commit" in data["environment"]
    report = (smoke_run / "report.md").read_text()
    assert f"model model.safetensors sha256 {weights['model.safetensors'][:12]}" in report


@pytest.mark.e2e
def test_a_changed_data_row_changes_the_hash_and_a_merge_names_it(tmp_path, smoke_run):
    csv = tmp_path / "pairs.csv"
    csv.write_text("article,summary\nOne article here.,One.\nAnother article.,Two.\n")
    before = data_provenance(csv, str(csv))
    csv.write_text("article,summary\nOne article here.,One!\nAnother article.,Two.\n")
    after = data_provenance(csv, str(csv))
    assert before["sha256"]["pairs.csv"] != after["sha256"]["pairs.csv"]
    a = json.loads((smoke_run / "results.json").read_text())
    b = json.loads(json.dumps(a))
    b["provenance"]["data"] = after
    assert "data files (sha256 or Hub revision differ)" in differences(a, b)
    assert not any("files" in d for d in differences(a, json.loads(json.dumps(a))))


def test_a_hub_id_records_its_revision_not_a_hash():
    assert set(model_provenance("gpt2")) == {"hub_id", "revision"}


@pytest.mark.e2e
def test_checkpoint_size_is_the_bytes_on_disk_and_soft_prompts_say_what_they_add(smoke_run):
    """Issue 26: what serving a method costs besides the base model: its checkpoint on disk, and the positions a
    soft prompt or prefix adds to every prompt (merged LoRA adds none)."""
    data = json.loads((smoke_run / "results.json").read_text())
    records = {r["name"]: r for r in data["records"]}
    lora = records["lora"]["artifacts"]
    on_disk = sum(p.stat().st_size for p in (smoke_run / "lora" / "peft_adapter").rglob("*.safetensors"))
    assert lora["peft_adapter_bytes"] == on_disk > 0
    assert records["last-block"]["artifacts"]["weights_bytes"] == (smoke_run / "last-block" /
                                                                   "weights.safetensors").stat().st_size
    assert records["prompt-tuning"]["params"]["positions_added"] == data["config"]["method"]["prompt_tuning"][
        "num_virtual_tokens"] > 0
    assert records["lora"]["params"]["positions_added"] == 0
    header = next(line for line in (smoke_run / "report.md").read_text().splitlines() if line.startswith("| method"))
    assert "checkpoint MB" in header and "prompt positions added" in header
