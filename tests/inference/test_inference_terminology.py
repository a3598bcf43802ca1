"""Issue 11: SNOMED CT terminology per class, from the protocol JSON into labels.csv (both Slicer column sets),
``.seg.nrrd`` ``SegmentN_Tags`` (read back by slicerio) and DICOM-SEG segment descriptions (read back by highdicom).
"""

from __future__ import annotations

import csv

import highdicom as hd
import nibabel as nib
import nrrd
import numpy as np
import pytest
import slicerio
from pydicom.sr.codedict import codes

from ultralight3d.cli import main
from ultralight3d.inference import Predictor, build_preprocessing, write_dicom_seg
from ultralight3d.io import read_dicom_folder
from ultralight3d.labels import (
    DICOM_MASTER_LIST,
    DICOM_TERMINOLOGY_COLUMNS,
    LABEL_CSV_HEADER,
    SLICER_GENERAL_ANATOMY,
    SLICER_TERMINOLOGY_COLUMNS,
    LabelTable,
    Terminology,
    label_csv_text,
    read_label_table,
    write_label_csv,
)
from ultralight3d.transforms import get_protocol, list_protocols

ANATOMY = ("SCT", "123037004", "Anatomical Structure")
LEFT, RIGHT = ("SCT", "7771000", "Left"), ("SCT", "24028007", "Right")
SHIPPED = ["demo", "feta", "prostate", "synapse", "synapse13"]
# codes not in pydicom's DICOM concept dictionary, with their source (see the protocol's "_desc_")
NOT_IN_PYDICOM = {"110765007"}  # portal vein and splenic vein: TotalSegmentator's SNOMED mapping


def _sct_values() -> set[str]:
    return {getattr(codes.SCT, kw).value for kw in codes.SCT.dir()}


def test_every_class_of_every_shipped_protocol_has_terminology():
    assert set(SHIPPED) <= set(list_protocols())
    known = _sct_values()
    for name in SHIPPED:
        table = LabelTable.from_protocol(name)
        assert len(table) == len(get_protocol(name)["labels"]) - 1
        for lab in table:
            term = lab.terminology
            assert term is not None, f"{name} class {lab.value} {lab.name} has no terminology"
            assert term.context in (SLICER_GENERAL_ANATOMY, DICOM_MASTER_LIST)
            for code in (term.category, term.type, term.type_modifier):
                if code is not None:
                    assert code[0] == "SCT" and (code[1] in known or code[1] in NOT_IN_PYDICOM), (name, lab.name, code)
            # laterality where the name says so, and only there
            side = LEFT if lab.name.startswith("left ") else RIGHT if lab.name.startswith("right ") else None
            assert term.type_modifier == side, (name, lab.name)
    assert LabelTable.from_protocol("generic").get(1).terminology is None
    synapse = LabelTable.from_protocol("synapse")
    assert synapse.get(5).terminology == Terminology(ANATOMY, ("SCT", "10200004", "Liver"))
    assert synapse.get(3).terminology.type == synapse.get(4).terminology.type == ("SCT", "64033007", "Kidney")
    prostate = LabelTable.from_protocol("prostate")
    assert prostate.get(1).terminology.type == ("SCT", "279706003", "Peripheral zone of the prostate")
    assert prostate.get(2).terminology.type == ("SCT", "399384005", "Transition zone of the prostate")


def test_label_csv_writes_both_slicer_column_sets_and_reads_either(tmp_path):
    table = LabelTable.from_protocol("synapse13")
    write_label_csv(table, tmp_path / "labels.csv")
    with open(tmp_path / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
        header = list(rows[0])
    assert header == LABEL_CSV_HEADER + SLICER_TERMINOLOGY_COLUMNS + DICOM_TERMINOLOGY_COLUMNS
    right_adrenal = rows[11]
    assert (right_adrenal["Name"], right_adrenal["Type_CodeValue"], right_adrenal["TypeModifier_CodeMeaning"]) == (
        "right adrenal gland",
        "23451007",
        "Right",
    )
    assert right_adrenal["SegmentedPropertyTypeModifierCodeSequence.CodeValue"] == "24028007"
    assert right_adrenal["SegmentedPropertyCategoryCodeSequence.CodingSchemeDesignator"] == "SCT"
    back = read_label_table(tmp_path / "labels.csv")
    for a, b in zip(table, back):
        assert b.terminology.same_codes(a.terminology) and b.extra == {}
        assert b.terminology.context is None  # a CSV table does not store it (Slicer's reader neither) ...
    again = back.with_terminology(table)  # ... the protocol supplies it again
    assert [lab.terminology for lab in again] == [lab.terminology for lab in table]
    # a table without terminology is written exactly as before (bundles regenerate byte for byte)
    assert label_csv_text(LabelTable.from_protocol("generic")).splitlines() == [
        ",".join(LABEL_CSV_HEADER),
        "1,foreground,128,174,128,255",
    ]


def test_user_label_table_terminology_is_kept(tmp_path, threshold_net):
    """An Auto3DSeg-style labels.csv (DICOM attribute columns) with its own codes and an extra column."""
    user = tmp_path / "mine.csv"
    user.write_text(
        "LabelValue,Name,SegmentedPropertyCategoryCodeSequence.CodingSchemeDesignator,"
        "SegmentedPropertyCategoryCodeSequence.CodeValue,SegmentedPropertyCategoryCodeSequence.CodeMeaning,"
        "SegmentedPropertyTypeCodeSequence.CodingSchemeDesignator,SegmentedPropertyTypeCodeSequence.CodeValue,"
        "SegmentedPropertyTypeCodeSequence.CodeMeaning,AnatomicRegionSequence.CodingSchemeDesignator,"
        "AnatomicRegionSequence.CodeValue,AnatomicRegionSequence.CodeMeaning,Note\n"
        "1,lesion,SCT,49755003,Morphologically Altered Structure,SCT,4147007,Mass,SCT,10200004,Liver,checked\n"
    )
    (lab,) = read_label_table(user)
    assert lab.terminology.category == ("SCT", "49755003", "Morphologically Altered Structure")
    assert lab.terminology.region == ("SCT", "10200004", "Liver") and lab.extra == {"Note": "checked"}
    vol = np.zeros((20, 20, 12), np.float32)
    vol[5:12, 5:12, 3:8] = 100
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "x.nii.gz")
    pred = Predictor(
        threshold_net, build_preprocessing("generic", {"normalization": {"kind": "none"}}), labels=user, progress=False
    )
    pred.roi_size = (16, 16, 16)
    assert pred.predict(tmp_path / "x.nii.gz", tmp_path / "out").ok
    (seg,) = slicerio.read_segmentation(str(tmp_path / "out" / "x.seg.nrrd"), skip_voxels=True)["segments"]
    assert seg["terminology"]["type"] == ["SCT", "4147007", "Mass"]
    assert seg["terminology"]["anatomicRegion"] == ["SCT", "10200004", "Liver"]
    (out,) = read_label_table(tmp_path / "out" / "labels.csv")
    assert out.terminology == lab.terminology and out.extra == {"Note": "checked"}


@pytest.fixture(scope="module")
def threshold_bundle(tmp_path_factory, make_threshold_bundle_fn):
    return make_threshold_bundle_fn(tmp_path_factory.mktemp("term") / "synapse_threshold")


def test_seg_nrrd_tags_as_slicer_writes_them(threshold_bundle, tmp_path):
    vol = np.zeros((24, 24, 12), np.float32)
    vol[4:12, 4:12, 2:8] = 100
    nib.save(nib.Nifti1Image(vol, np.diag([1.0, 1, 2, 1])), tmp_path / "ct.nii.gz")
    out = tmp_path / "out"
    args = ["predict", "-i", str(tmp_path / "ct.nii.gz"), "-o", str(out), "--bundle", str(threshold_bundle)]
    assert main(args + ["--device", "cpu", "--quiet"]) == 0
    _, header = nrrd.read(str(out / "ct.seg.nrrd"))
    assert header["Segment2_Name"] == "left kidney"
    assert header["Segment2_Tags"] == (
        "TerminologyEntry:Segmentation category and type - 3D Slicer General Anatomy list"
        "~SCT^123037004^Anatomical Structure~SCT^64033007^Kidney~SCT^7771000^Left"
        "~Anatomic codes - DICOM master list~^^~^^|"
    )
    segments = {
        s["name"]: s for s in slicerio.read_segmentation(str(out / "ct.seg.nrrd"), skip_voxels=True)["segments"]
    }
    assert segments["right kidney"]["terminology"]["typeModifier"] == list(RIGHT)
    assert segments["aorta"]["terminology"] == {
        "contextName": SLICER_GENERAL_ANATOMY,
        "category": list(ANATOMY),
        "type": ["SCT", "15825003", "Aorta"],
        "anatomicContextName": "Anatomic codes - DICOM master list",
    }
    # the run's colour table carries them too (Slicer's Category_*/Type_* columns)
    with open(out / "labels.csv", newline="") as fh:
        rows = {r["Name"]: r for r in csv.DictReader(fh)}
    assert (rows["left kidney"]["Type_CodeValue"], rows["left kidney"]["TypeModifier_CodeValue"]) == (
        "64033007",
        "7771000",
    )


def test_dicom_seg_carries_the_snomed_codes(tmp_path, dicom_series_fn):
    rng = np.random.default_rng(0)
    vol = (rng.random((8, 20, 18)) * 10).astype(np.int16)  # (Z, Y, X)
    dicom_series_fn(vol, tmp_path / "dcm")
    img = read_dicom_folder(tmp_path / "dcm")
    label = np.zeros(img.spatial_shape, np.uint8)
    label[2:6, 3:9, 1:4] = 3  # left kidney (synapse13 values)
    label[10:14, 3:9, 4:7] = 2  # right kidney
    table = LabelTable.from_protocol("synapse13").subset([2, 3, 9])  # + inferior vena cava, empty
    path = write_dicom_seg(label, img.meta["dicom_files"], table, tmp_path / "x_seg.dcm")
    seg = hd.seg.segread(path)
    got = {}
    for item in seg.SegmentSequence:
        cat = item.SegmentedPropertyCategoryCodeSequence[0]
        typ = item.SegmentedPropertyTypeCodeSequence[0]
        mods = getattr(typ, "SegmentedPropertyTypeModifierCodeSequence", [])
        got[item.SegmentLabel] = (cat.CodeValue, typ.CodeValue, typ.CodeMeaning, [m.CodeValue for m in mods])
    assert got == {
        "right kidney": ("123037004", "64033007", "Kidney", ["24028007"]),
        "left kidney": ("123037004", "64033007", "Kidney", ["7771000"]),
        "inferior vena cava": ("123037004", "64131007", "Inferior vena cava", []),
    }
    desc = seg.get_segment_description(2)
    assert desc.segmented_property_type.value == "64033007" and desc.segmented_property_category.value == "123037004"
