"""Tests of the SavedModel export: signatures, versions, atomicity, raw text."""

import numpy as np
import pytest
import tensorflow as tf

from tf_finetune.errors import ExportError
from tf_finetune.export import saved_model
from tf_finetune.modeling.models import build_model, load_model_config

ALL_INPUTS = ["input_ids", "token_type_ids", "attention_mask"]
INPUTS = {
    "input_ids": np.array([[2, 5, 20, 3, 0, 0], [2, 9, 12, 14, 8, 3]], np.int32),
    "attention_mask": np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], np.int32),
    "token_type_ids": np.zeros((2, 6), np.int32),
}


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    path = str(tiny_checkpoint)
    return build_model(path, load_model_config(path, ["neg", "pos"]))


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoint):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_checkpoint)


@pytest.fixture(scope="module")
def text_export(model, tokenizer, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    return saved_model.export_saved_model(
        model, ["neg", "pos"], ALL_INPUTS, folder, tokenizer=tokenizer, max_length=12
    )


def test_token_id_signature_reproduces_the_model(model, text_export):
    loaded = tf.saved_model.load(str(text_export.path))
    assert set(loaded.signatures) == {"serving_default", saved_model.TOKEN_IDS_SIGNATURE}
    signature = loaded.signatures[saved_model.TOKEN_IDS_SIGNATURE]
    assert set(signature.structured_input_signature[1]) == set(saved_model.INPUT_NAMES)
    outputs = signature(**{k: tf.constant(v) for k, v in INPUTS.items()})
    expected = model(INPUTS, training=False).logits.numpy()
    np.testing.assert_allclose(outputs["logits"].numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(
        outputs["probabilities"].numpy(), tf.nn.softmax(expected).numpy(), atol=1e-6
    )
    assert [n.decode() for n in loaded.label_names.numpy()] == ["neg", "pos"]


def test_serving_default_takes_raw_text(model, tokenizer, text_export):
    assert text_export.raw_text and text_export.reason is None
    served = tf.saved_model.load(str(text_export.path)).signatures["serving_default"]
    assert list(served.structured_input_signature[1]) == ["text"]
    texts = ["good film", "the plot was dull and boring .", "", "Café 😀 中文 !!"]
    outputs = served(text=tf.constant(texts))
    encoded = tokenizer(texts, truncation=True, max_length=12, padding=True, return_tensors="tf")
    expected = tf.nn.softmax(model(dict(encoded), training=False).logits).numpy()
    np.testing.assert_allclose(outputs["scores"].numpy(), expected, atol=1e-5)
    assert outputs["scores"].dtype == tf.float32
    assert outputs["classes"].numpy().tolist() == [[b"neg", b"pos"]] * 4
    assert outputs["label_id"].numpy().tolist() == expected.argmax(1).tolist()
    assert outputs["label"].numpy().tolist() == [[b"neg", b"pos"][i] for i in expected.argmax(1)]


def test_raw_text_batches_run_in_length_chunks_and_keep_their_order(model, tokenizer, text_export):
    served = tf.saved_model.load(str(text_export.path)).signatures["serving_default"]
    words = ["good", "bad", "film", "plot", "dull", "lovely", "story", "the", "was", "very"]
    # 40 rows of 0 to 9 words, shuffled: three chunks of up to 16 rows each.
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, size=n % 10)) for n in rng.permutation(40)]
    assert len(texts) > 2 * saved_model.SERVING_CHUNK
    got = served(text=tf.constant(texts))["scores"].numpy()
    for text, scores in zip(texts, got, strict=True):
        encoded = tokenizer([text], truncation=True, max_length=12, return_tensors="tf")
        expected = tf.nn.softmax(model(dict(encoded), training=False).logits).numpy()[0]
        np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert served(text=tf.constant([], tf.string))["scores"].shape == (0, 2)


def test_pair_models_take_text_pair(model, tokenizer, tmp_path):
    exported = saved_model.export_saved_model(
        model, ["neg", "pos"], ALL_INPUTS, tmp_path, tokenizer, max_length=10, text_pair=True
    )
    served = tf.saved_model.load(str(exported.path)).signatures["serving_default"]
    assert set(served.structured_input_signature[1]) == {"text", "text_pair"}
    texts, pairs = ["good film", "the film was very dull"], ["bad plot and acting", ""]
    encoded = tokenizer(
        texts, pairs, truncation=True, max_length=10, padding=True, return_tensors="tf"
    )
    expected = tf.nn.softmax(model(dict(encoded), training=False).logits).numpy()
    got = served(text=tf.constant(texts), text_pair=tf.constant(pairs))["scores"].numpy()
    # Rows are served padded to their own length, not the batch's: float32 sums in
    # another order, so allow the export check's own 1e-4.
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_without_a_supported_tokenizer_it_says_so_and_keeps_token_ids(model, tmp_path):
    exported = saved_model.export_saved_model(model, ["neg", "pos"], ALL_INPUTS, tmp_path)
    assert not exported.raw_text
    assert exported.reason == "no tokenizer was given to the export."
    served = tf.saved_model.load(str(exported.path)).signatures["serving_default"]
    assert set(served.structured_input_signature[1]) == set(saved_model.INPUT_NAMES)


def test_a_new_export_is_the_next_version(model, tmp_path):
    (tmp_path / "7").mkdir()
    exported = saved_model.export_saved_model(model, ["neg", "pos"], ALL_INPUTS, tmp_path)
    assert exported.path == tmp_path / "8"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["7", "8"]


def test_a_failed_export_leaves_nothing(model, tmp_path, monkeypatch):
    def broken_check(*args):
        raise ExportError("simulated mismatch")

    monkeypatch.setattr(saved_model, "_check_reload", broken_check)
    with pytest.raises(ExportError, match="simulated"):
        saved_model.export_saved_model(model, ["neg", "pos"], ["input_ids"], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_raw_text_that_scores_otherwise_than_the_tokenizer_ids_is_not_exported(
    tiny_checkpoint, tokenizer, tmp_path, monkeypatch
):
    """The export compares its raw-text signature with the model on the Hugging Face
    tokenizer's ids of probe texts: a graph tokenizer that cut texts otherwise (here:
    the check expects an id more per text) stops it, and nothing is written."""
    from tf_finetune.data import tokenization

    path = str(tiny_checkpoint)
    model = build_model(path, load_model_config(path, ["neg", "pos"]))
    # Random weights 10 times their initial size: a token more moves the logits beyond
    # the check's tolerance (at their initial size it moved them less than 1e-4).
    for weight in model.trainable_weights:
        if "kernel" in weight.name or "embeddings" in weight.name:
            weight.assign(weight * 10)
    encode = tokenization.encode

    def one_more_token(*args):
        return [
            tokenization._Cut([*e.ids, 7], [*e.type_ids, 0]) if e.ids else e for e in encode(*args)
        ]

    monkeypatch.setattr(tokenization, "encode", one_more_token)
    with pytest.raises(ExportError, match="does not reproduce the model's outputs on raw text"):
        saved_model.export_saved_model(model, ["neg", "pos"], ALL_INPUTS, tmp_path, tokenizer, 12)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_is_an_export_error_and_leaves_no_staging(model, tokenizer, full_disk):
    with pytest.raises(ExportError) as raised:
        saved_model.export_saved_model(model, ["neg", "pos"], ALL_INPUTS, full_disk, tokenizer, 16)
    assert str(raised.value) == (
        f"Cannot write the SavedModel to {full_disk}: No space left on device. Nothing was "
        "exported; fix the cause (disk space?)."
    )
    assert [p.name for p in full_disk.iterdir()] == ["filler"]


def test_the_token_id_signature_takes_exactly_the_models_inputs(model, tmp_path):
    """A tokenizer's own output is fed as it is: DistilBERT's and RoBERTa's have no
    token_type_ids, and NumPy's int64 ids are taken."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1, "good": 5, "film": 7}, "[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        model_input_names=["input_ids", "attention_mask"],
    )
    names = tokenizer.model_input_names
    exported = saved_model.export_saved_model(model, ["neg", "pos"], names, tmp_path)
    served = tf.saved_model.load(str(exported.path)).signatures[saved_model.TOKEN_IDS_SIGNATURE]
    assert sorted(served.structured_input_signature[1]) == ["attention_mask", "input_ids"]
    encoded = tokenizer(["good film", "film"], padding=True, return_tensors="np")
    assert sorted(encoded) == ["attention_mask", "input_ids"]
    logits = served(**encoded)["logits"].numpy()
    expected = model({k: tf.constant(v) for k, v in encoded.items()}, training=False).logits
    np.testing.assert_allclose(logits, expected.numpy(), atol=1e-5)
    with pytest.raises(TypeError, match="token_type_ids"):
        served(**encoded, token_type_ids=tf.zeros_like(encoded["input_ids"]))


def test_an_unsupported_tokenizer_keeps_token_ids_and_says_why(model, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"a": 0, "b": 1, "<unk>": 2}, "<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    words = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    exported = saved_model.export_saved_model(
        model, ["neg", "pos"], ALL_INPUTS, tmp_path, tokenizer=words, max_length=8
    )
    assert not exported.raw_text
    assert "uses a WordLevel model; WordPiece" in exported.reason
    served = tf.saved_model.load(str(exported.path)).signatures["serving_default"]
    assert set(served.structured_input_signature[1]) == set(saved_model.INPUT_NAMES)


def test_a_tokenizer_without_a_pad_token_exports_raw_text(model, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.Unigram([("<unk>", 0.0), ("▁a", -1.0), ("▁b", -2.0)], 0))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    unigram = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    assert unigram.pad_token is None
    exported = saved_model.export_saved_model(
        model, ["neg", "pos"], ["input_ids", "attention_mask"], tmp_path, tokenizer=unigram,
        max_length=8,
    )  # fmt: skip
    assert exported.raw_text, exported.reason
    served = tf.saved_model.load(str(exported.path)).signatures["serving_default"]
    scores = served(text=tf.constant(["a b", "b a a"]))["scores"].numpy()
    expected = [
        tf.nn.softmax(model(dict(unigram(text, return_tensors="tf")), training=False).logits)[0]
        for text in ["a b", "b a a"]
    ]
    np.testing.assert_allclose(scores, np.stack(expected), atol=1e-5)


def test_the_exported_model_has_no_float_transposes(text_export):
    """oneDNN's transpose is slow for one text's tensors: the model permutes by einsum."""
    loaded = tf.saved_model.load(str(text_export.path))
    for name in ("serving_default", saved_model.TOKEN_IDS_SIGNATURE):
        library = loaded.signatures[name].graph.as_graph_def().library.function
        nodes = [node for function in library for node in function.node_def]
        assert any(node.op == "Einsum" for node in nodes), name
        # A Dense layer's tensordot transposes by the identity, which Grappler removes.
        float_transposes = [
            node.name
            for node in nodes
            if node.op == "Transpose" and node.attr["T"].type == 1 and "Tensordot" not in node.name
        ]
        assert not float_transposes, (name, float_transposes)
