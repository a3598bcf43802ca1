"""Real ProstateX DICOM (T2 + ADC) end to end; DICOM-SEG read back with highdicom (skipped when data is absent)."""

from __future__ import annotations

import json

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest

from ultralight3d.cli import main
from ultralight3d.inference import write_dicom_seg
from ultralight3d.io import read_series, scan_dicom
from ultralight3d.labels import LabelTable

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def prostatex(shared_data):
    root = shared_data / "prostatex_dicom" / "ProstateX"
    if not root.is_dir():
        pytest.skip("prostatex_dicom is absent")
    return root


def test_dicom_seg_frames_reference_the_source_slices(prostatex, tmp_path):
    t2 = next(s for s in scan_dicom(prostatex / "ProstateX-0000") if "t2" in s.description)
    img = read_series(t2)
    label = np.zeros(img.spatial_shape, np.uint8)
    label[100:150, 200:260, 5:9] = 1  # columns 100-149, rows 200-259, frames 5-8
    label[180:190, 180:190, 12] = 2
    table = LabelTable.from_names({1: "peripheral zone", 2: "transition zone"})
    path = write_dicom_seg(label, img.meta["dicom_files"], table, tmp_path / "x_seg.dcm")
    seg = hd.seg.segread(path)
    assert seg.SegmentationType == "BINARY" and [s.SegmentLabel for s in seg.SegmentSequence] == [
        "peripheral zone",
        "transition zone",
    ]
    sop = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in img.meta["dicom_files"]]
    assert {u[2] for u in seg.get_source_image_uids()} == set(sop)
    # only the non-empty source frames are stored; each maps back to the slice it came from
    got = seg.get_pixels_by_source_instance(sop[5:9] + sop[12:13], combine_segments=True)
    np.testing.assert_array_equal(got[:4], np.transpose(label[:, :, 5:9], (2, 1, 0)))
    np.testing.assert_array_equal(got[4], label[:, :, 12].T)


def test_prostatex_t2_adc_end_to_end(prostatex, bundle_factory, tmp_path):
    bundle = bundle_factory(
        "prostate",
        protocol="prostate",
        roi_size=[64, 64, 64],
        sw_batch_size=1,
        overlap=0.25,
        progress=False,
        transform_params={"spacing": [4.0, 4.0, 4.0]},
    )
    out = tmp_path / "out"
    rc = main(
        [
            "predict",
            "-i",
            str(prostatex / "ProstateX-0000"),
            "-o",
            str(out),
            "--bundle",
            str(bundle),
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert rc == 0
    t2 = next(s for s in scan_dicom(prostatex / "ProstateX-0000") if "t2" in s.description)
    ref = read_series(t2)
    nii = nib.load(out / "ProstateX-0000_seg.nii.gz")
    assert nii.shape == (384, 384, 19) and nii.get_data_dtype() == np.uint8
    np.testing.assert_allclose(nii.affine, ref.affine, atol=1e-4)
    ds = pydicom.dcmread(out / "ProstateX-0000_seg.dcm")
    assert ds.Modality == "SEG" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    referenced = {r.ReferencedSOPInstanceUID for s in ds.ReferencedSeriesSequence for r in s.ReferencedInstanceSequence}
    assert referenced == {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in t2.files}
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == t2.uid
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cases"][0]["status"] == "ok" and set(summary["cases"][0]["volume_ml"]) == {"1", "2"}
    # patient 0001 has two T2 series: the run reports them and fails that case with exit code 1
    rc = main(
        [
            "predict",
            "-i",
            str(prostatex / "ProstateX-0001"),
            "-o",
            str(tmp_path / "o2"),
            "--bundle",
            str(bundle),
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert rc == 1
    err = json.loads((tmp_path / "o2" / "summary.json").read_text())["cases"][0]["error"]
    assert "several series match channel 'T2'; pass --channel T2=SERIES_UID" in err
