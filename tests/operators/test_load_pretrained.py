import shutil
import textwrap
from pathlib import Path

import pytest
import torch

from operators.load_pretrained import NoClassLoads, dtype_keyword, load_pretrained
from operators.model_files import check_model_reference
from operators.torch_device import pick_device, pick_dtype


class Recorder:
    """Stands in for a model class: records what from_pretrained, eval and to were given."""

    calls: list = []

    @classmethod
    def from_pretrained(cls, folder, **options):
        cls.calls.append(("from_pretrained", folder, options))
        return cls()

    def eval(self):
        self.calls.append(("eval",))
        return self

    def to(self, device):
        self.calls.append(("to", device))
        return self


class FakePipeline:
    """A diffusers pipeline's surface: from_pretrained and to, no eval."""

    __module__ = "diffusers.pipelines.fake"
    calls: list = []

    @classmethod
    def from_pretrained(cls, folder, **options):
        cls.calls.append(("from_pretrained", folder, options))
        return cls()

    def to(self, device):
        self.calls.append(("to", device))
        return self


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_auto_means_the_cpu_in_float32_without_a_gpu(tiny_bert, no_gpu):
    from transformers import AutoModel

    loaded = load_pretrained(AutoModel, tiny_bert)
    assert (loaded.device, loaded.dtype, loaded.folder) == (torch.device("cpu"), torch.float32, tiny_bert)
    assert not loaded.model.training
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}
    assert {p.device.type for p in loaded.model.parameters()} == {"cpu"}


def test_a_named_dtype_is_loaded_as_named(tiny_bert):
    from transformers import AutoModel

    loaded = load_pretrained(AutoModel, tiny_bert, device="cpu", dtype="bfloat16")
    assert loaded.dtype == torch.bfloat16
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}


def test_device_and_dtype_choice():
    assert pick_dtype("auto", torch.device("cuda")) == torch.float16  # tensor cores
    assert pick_dtype("auto", torch.device("cpu")) == torch.float32  # half is slow on CPUs
    assert pick_dtype(torch.bfloat16, torch.device("cpu")) == torch.bfloat16
    assert pick_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="float16"):
        pick_dtype("float8", torch.device("cpu"))


def test_from_pretrained_gets_safetensors_the_trust_policy_and_the_dtype(tmp_path, no_gpu):
    Recorder.calls = []
    loaded = load_pretrained(Recorder, str(tmp_path), some_option=3)
    assert Recorder.calls == [
        (
            "from_pretrained",
            str(tmp_path),
            {"use_safetensors": True, "trust_remote_code": False, "dtype": torch.float32, "some_option": 3},
        ),
        ("eval",),
        ("to", torch.device("cpu")),
    ]
    assert isinstance(loaded.model, Recorder)
    with pytest.raises(TypeError, match="use_safetensors"):  # the policy is not an option
        load_pretrained(Recorder, str(tmp_path), use_safetensors=False)


def test_a_diffusers_class_skips_eval_and_gets_the_dtype_under_its_name(tmp_path, no_gpu, monkeypatch):
    from operators import load_pretrained as module

    monkeypatch.setattr(module, "diffusers_version", lambda: (0, 39))
    FakePipeline.calls = []
    loaded = load_pretrained(FakePipeline, str(tmp_path), dtype="float16")
    assert FakePipeline.calls == [
        (
            "from_pretrained",
            str(tmp_path),
            {"use_safetensors": True, "trust_remote_code": False, "torch_dtype": torch.float16},
        ),
        ("to", torch.device("cpu")),
    ]
    assert loaded.dtype == torch.float16

    class Subclass(FakePipeline):  # a user's pipeline built on a diffusers one is still diffusers
        pass

    assert (dtype_keyword(Subclass), dtype_keyword(Recorder)) == ("torch_dtype", "dtype")
    monkeypatch.setattr(module, "diffusers_version", lambda: (0, 40))  # took transformers' name
    assert dtype_keyword(Subclass) == "dtype"


def test_pickled_weights_are_never_loaded(tiny_bert, tmp_path):
    from transformers import AutoModel, BertModel

    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(Path(tiny_bert) / "config.json", folder)
    torch.save(BertModel.from_pretrained(tiny_bert).state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(OSError, match="safetensors"):
        load_pretrained(AutoModel, str(folder))


MODELING = """
import torch
from transformers import PreTrainedConfig, PreTrainedModel


class TinyCustomConfig(PreTrainedConfig):
    model_type = "rayjobs_tiny_custom"

    def __init__(self, width=4, **kwargs):
        self.width = width
        super().__init__(**kwargs)


class TinyCustomModel(PreTrainedModel):
    config_class = TinyCustomConfig

    def __init__(self, config):
        super().__init__(config)
        self.layer = torch.nn.Linear(config.width, config.width)
        self.post_init()

    def forward(self, x):
        return self.layer(x)
"""


@pytest.fixture
def custom_code_checkpoint(tmp_path, monkeypatch) -> str:
    """A checkpoint whose architecture exists only in its own modeling_tiny_custom.py."""
    import importlib.util
    import json

    from transformers import dynamic_module_utils

    # Trusted code is copied into HF's modules cache: keep it inside the test's folder.
    monkeypatch.setattr(dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "modeling_tiny_custom.py").write_text(textwrap.dedent(MODELING))
    spec = importlib.util.spec_from_file_location("modeling_tiny_custom", folder / "modeling_tiny_custom.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.TinyCustomModel(module.TinyCustomConfig()).save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "modeling_tiny_custom.TinyCustomConfig",
        "AutoModel": "modeling_tiny_custom.TinyCustomModel",
    }
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


def test_checkpoint_code_runs_only_when_trust_remote_code_is_on(custom_code_checkpoint):
    from transformers import AutoModel

    with pytest.raises(ValueError, match="model.trust_remote_code=true"):
        load_pretrained(AutoModel, custom_code_checkpoint)
    with pytest.raises(TypeError, match="true or false"):
        load_pretrained(AutoModel, custom_code_checkpoint, trust_remote_code="false")
    loaded = load_pretrained(AutoModel, custom_code_checkpoint, trust_remote_code=True)
    assert type(loaded.model).__name__ == "TinyCustomModel" and not loaded.model.training


def test_the_first_class_that_knows_the_checkpoint_loads_it(tiny_bert):
    from transformers import AutoModel, AutoModelForImageTextToText, AutoModelForSpeechSeq2Seq

    loaded = load_pretrained([AutoModelForImageTextToText, AutoModel], tiny_bert)
    assert type(loaded.model).__name__ == "BertModel"
    with pytest.raises(NoClassLoads, match="AutoModelForImageTextToText.*AutoModelForSpeechSeq2Seq"):
        load_pretrained([AutoModelForImageTextToText, AutoModelForSpeechSeq2Seq], tiny_bert)
    with pytest.raises(ValueError, match="Unrecognized configuration class"):  # one class: its own error
        load_pretrained(AutoModelForImageTextToText, tiny_bert)


def test_a_reference_is_a_transformers_checkpoint_or_a_diffusers_pipeline(tmp_path, tiny_bert):
    pipeline = tmp_path / "pipeline"
    pipeline.mkdir()
    (pipeline / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    empty = tmp_path / "empty"
    empty.mkdir()
    assert check_model_reference(tiny_bert) is None
    assert check_model_reference(str(pipeline)) is None
    assert check_model_reference(f"file://{pipeline}") is None
    assert "config.json or model_index.json" in check_model_reference(str(empty))
    assert "is a file" in check_model_reference(str(pipeline / "model_index.json"))
    assert "does not exist" in check_model_reference(str(tmp_path / "missing"))
    assert "not in the local cache" in check_model_reference(
        "nobody-here/no-such-model-xyz"
    )  # HF_HUB_OFFLINE=1
    assert check_model_reference("s3://bucket/model") is None  # remote: checked when an actor copies it


def test_a_diffusers_pipeline_loads_through_the_same_path(tiny_stable_diffusion, no_gpu):
    import diffusers

    folder = tiny_stable_diffusion
    assert check_model_reference(folder) is None
    loaded = load_pretrained(diffusers.DiffusionPipeline, folder)
    assert type(loaded.model).__name__ == "StableDiffusionPipeline"
    assert (loaded.device, loaded.dtype) == (torch.device("cpu"), torch.float32)
    assert loaded.model.unet.dtype == torch.float32 and not loaded.model.unet.training
    images = loaded.model(
        "a red cat", num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np"
    ).images
    assert images.shape == (1, 16, 16, 3)
