"""Issue 26: provenance. A run records the sha256 of its model's weight files and of its data file(s) beside the
package versions and code commit; a changed data row changes the hash; merging runs whose files differ names it."""

import hashlib
import json
from pathlib import Path

from tunebench.models import base_model_path
from tunebench.provenance import data_provenance, model_provenance
from tunebench.results import differences


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
