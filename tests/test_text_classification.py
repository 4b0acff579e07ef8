"""Text classification: reading labelled texts, tokenising (a tokenizer trained here), dynamic padding, the
Hugging Face classifier wrapper, and curves between two text classifiers with exact endpoints."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import quiet_trainer
from text_helpers import TINY_BERT, write_sentiment_jsonl

from unlearn_mc.curves import CurveEvaluation, CurveModule
from unlearn_mc.data import TextDataModule
from unlearn_mc.data.padding import IGNORE_INDEX, PAD_ID, cat_padded, collate_tokens
from unlearn_mc.data.text_records import read_text_records
from unlearn_mc.data.tokenization import TextEncoder
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.models import HFSequenceClassifier


def tiny_bert(seed: int = 0) -> HFSequenceClassifier:
    torch.manual_seed(seed)
    return HFSequenceClassifier(config=TINY_BERT, num_classes=2).eval()


def test_records_from_jsonl_csv_and_string_labels(tmp_path):
    records = read_text_records(write_sentiment_jsonl(tmp_path / "a.jsonl", 10))
    assert len(records.train_texts) == 10 and records.num_classes == 2 and records.test_texts is None
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "train.csv").write_text("text,label\nhello there,pos\nbad one,neg\nfine,pos\n")
    (tmp_path / "folder" / "test.csv").write_text("text,label\nok,neg\n")
    records = read_text_records(tmp_path / "folder")
    assert records.train_labels == [1, 0, 1] and records.test_labels == [0] and records.num_classes == 2


def test_bad_records_name_the_line_and_the_fields(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine", "label": 1}\n{"text": "no label here"}\n')
    with pytest.raises(UnlearnMCError, match=r"record 2 of .*bad.jsonl.* lacks 'text' or 'label'"):
        read_text_records(path)
    with pytest.raises(UnlearnMCError, match=r"nowhere.jsonl.* does not exist"):
        read_text_records(tmp_path / "nowhere.jsonl")


def test_local_tokenizer_is_deterministic_and_batches_are_padded_to_their_longest_text():
    texts = ["the good film", "a bad bad plot was weak", "fine"]
    first, second = TextEncoder.train_local(texts, 32), TextEncoder.train_local(list(reversed(texts)), 32)
    ids = first.encode(texts, max_length=5)
    assert [t.tolist() for t in ids] == [t.tolist() for t in second.encode(texts, max_length=5)]
    assert [len(t) for t in ids] == [4, 5, 2]  # [CLS] + words, truncated to 5
    batch, labels = collate_tokens([(t, k) for k, t in enumerate(ids)])
    assert batch.shape == (3, 5) and batch[2, 2:].eq(PAD_ID).all() and labels.tolist() == [0, 1, 2]
    lm_batch, targets = collate_tokens([(t, t.clone()) for t in ids])
    assert targets.shape == (3, 5) and targets[2, 2:].eq(IGNORE_INDEX).all()
    joined = cat_padded([batch[:, :3], batch])
    assert joined.shape == (6, 5) and joined[:3, 3:].eq(PAD_ID).all()


def test_classifier_logits_do_not_depend_on_extra_padding():
    net = tiny_bert()
    ids = torch.randint(0, 64, (3, 6))
    padded = torch.nn.functional.pad(ids, (0, 4), value=PAD_ID)
    torch.testing.assert_close(net(padded), net(ids), rtol=1e-5, atol=1e-5)
    mask = torch.ones_like(ids)
    assert torch.equal(net(input_ids=ids, attention_mask=mask), net(ids))  # keyword inputs, as dict batches give them


def test_missing_model_folder_is_named(tmp_path):
    with pytest.raises(UnlearnMCError, match=r"model folder .*nowhere.* does not exist"):
        HFSequenceClassifier(model_dir=str(tmp_path / "nowhere"))


def test_a_saved_model_and_tokenizer_folder_are_read_locally(tmp_path):
    net = tiny_bert()
    net.model.save_pretrained(tmp_path / "model")
    reread = HFSequenceClassifier(model_dir=str(tmp_path / "model"), num_classes=2).eval()
    ids = torch.randint(0, 64, (2, 5))
    assert torch.equal(reread(ids), net(ids))


def test_datamodule_split_is_seeded_persisted_and_serves_padded_batches(tmp_path):
    data = write_sentiment_jsonl(tmp_path / "text.jsonl")
    settings = dict(data_dir=str(data), vocab_size=64, split_file=str(tmp_path / "split.json"), batch_size=8)
    first = TextDataModule(**settings)
    first.setup("fit")
    again = TextDataModule(**settings)
    again.setup("fit")
    assert json.loads((tmp_path / "split.json").read_text())["forget"] == again.split.forget == first.split.forget
    ids, labels = next(iter(first.eval_dataloaders()["forget"]))
    assert ids.dtype == torch.long and ids.shape[0] == len(labels) and (ids[:, 0] != PAD_ID).all()
    assert int(ids.max()) < 64 and first.num_classes == 2


def test_curve_between_two_text_classifiers_reproduces_its_endpoints_exactly_and_trains_on_a_method(tmp_path):
    data = write_sentiment_jsonl(tmp_path / "text.jsonl", 48)
    datamodule = TextDataModule(data_dir=str(data), vocab_size=64, split_file=str(tmp_path / "split.json"), batch_size=8, forget_ratio=0.25)
    start, end = tiny_bert(0), tiny_bert(1)
    torch.save({f"net.{k}": v for k, v in start.state_dict().items()}, tmp_path / "start.pt")
    curve = CurveModule(copy.deepcopy(start), start=start, end=end, curve="bezier", num_bends=3,
                        objective="GradDiff", objective_args={"original": str(tmp_path / "start.pt")})
    quiet_trainer(max_steps=2, limit_val_batches=0, default_root_dir=tmp_path, callbacks=[CurveEvaluation(t_grid=2, figure=False)]).fit(curve, datamodule=datamodule)
    ids, _ = next(iter(datamodule.eval_dataloaders()["retain"]))
    curve.eval()
    assert torch.equal(curve(ids, t=0.0), start(ids)) and torch.equal(curve(ids, t=1.0), end(ids))
    for key, value in start.state_dict().items():
        assert torch.equal(curve.state_dict_at(0.0)[key], value)
    assert not torch.equal(curve.state_dict_at(0.5)["model.classifier.weight"], (start.model.classifier.weight + end.model.classifier.weight) / 2)
