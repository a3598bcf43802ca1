"""DICOM series discovery and validation on the real ProstateX series (skipped when ../shared/data is absent)."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

from ultralight3d.errors import UserInputError
from ultralight3d.io import DicomSeries, discover_cases, load_case, read_dicom_folder, read_series, scan_dicom

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def prostatex(shared_data):
    root = shared_data / "prostatex_dicom"
    if not root.is_dir():
        pytest.skip("prostatex_dicom is absent")
    return root


def test_scan_groups_series_and_sorts_slices(prostatex):
    series = scan_dicom(prostatex / "ProstateX" / "ProstateX-0000")
    assert sorted(s.description for s in series) == ["ep2d_diff_tra_DYNDIST_ADC", "t2_tse_tra"]
    t2 = next(s for s in series if s.description == "t2_tse_tra")
    img = read_series(t2)
    assert img.array.shape == (1, 384, 384, 19)
    files = img.meta["dicom_files"]
    assert len(files) == 19
    # frame k of the volume is files[k]: its ImagePositionPatient (LPS) is the affine's (0, 0, k) voxel
    for k in (0, 7, 18):
        ipp = np.asarray(pydicom.dcmread(files[k], stop_before_pixels=True).ImagePositionPatient, float)
        ras = img.affine @ np.array([0, 0, k, 1.0])
        np.testing.assert_allclose(ras[:3] * [-1, -1, 1], ipp, atol=1e-3)


def test_missing_slice_is_reported(prostatex):
    folder = prostatex / "ProstateX-missing-slice"
    with pytest.raises(
        UserInputError,
        match=r"DICOM series .* is missing 1 slice\(s\) between 1-07\.dcm and "
        r"1-05\.dcm .*re-export the complete series",
    ):
        read_dicom_folder(folder)
    # through predict-style discovery the error surfaces when the case is loaded
    (case,) = discover_cases(folder)
    with pytest.raises(UserInputError, match="is missing 1 slice"):
        load_case(case)


def test_mixed_series_sizes(prostatex, tmp_path):
    src = prostatex / "ProstateX" / "ProstateX-0000" / "07-07-2011"
    t2 = next(src.glob("*t2tsetra*"))
    adc = next(src.glob("*ADC*"))
    uid = pydicom.dcmread(next(t2.glob("*.dcm")), stop_before_pixels=True).SeriesInstanceUID
    for f in sorted(t2.glob("*.dcm"))[:5]:
        shutil.copy(f, tmp_path / f"t2_{f.name}")
    for f in sorted(adc.glob("*.dcm"))[:3]:
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = uid  # same series UID, other image size
        ds.save_as(tmp_path / f"adc_{f.name}")
    with pytest.raises(UserInputError, match=r"mixes image sizes \[\(128, 84\), \(384, 384\)\] \(a mixed series\)"):
        read_dicom_folder(tmp_path)


def test_duplicate_positions_are_a_mixed_series(prostatex, tmp_path):
    t2 = next((prostatex / "ProstateX" / "ProstateX-0000" / "07-07-2011").glob("*t2tsetra*"))
    for f in sorted(t2.glob("*.dcm"))[:4]:
        shutil.copy(f, tmp_path / f"a_{f.name}")
        ds = pydicom.dcmread(f)
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(tmp_path / f"b_{f.name}")
    with pytest.raises(UserInputError, match=r"has several images at one slice position .* a mixed series"):
        read_dicom_folder(tmp_path)


def test_ambiguous_series_are_listed(prostatex):
    cases = discover_cases(prostatex / "ProstateX", channels=["T2", "ADC"])
    by_id = {c.case_id: c for c in cases}
    assert set(by_id) == {"ProstateX-0000", "ProstateX-0001"}
    assert by_id["ProstateX-0000"].error is None
    sources = by_id["ProstateX-0000"].sources
    assert all(isinstance(s, DicomSeries) for s in sources)
    assert [s.description for s in sources if isinstance(s, DicomSeries)] == ["t2_tse_tra", "ep2d_diff_tra_DYNDIST_ADC"]
    err = by_id["ProstateX-0001"].error
    assert err is not None
    assert "several series match channel 'T2'; pass --channel T2=SERIES_UID" in err
    assert err.count("'t2_tse_tra'") == 2 and "1.3.6.1.4.1.14519.5.2.1.7311.5101.296510477295449267377313817541" in err
    # a folder with several series for a single-channel bundle lists them too
    with pytest.raises(UserInputError, match=r"holds 2 DICOM series; choose one with --series UID"):
        read_dicom_folder(prostatex / "ProstateX" / "ProstateX-0000")


def test_channel_by_series_uid(prostatex):
    uid = "1.3.6.1.4.1.14519.5.2.1.7311.5101.296510477295449267377313817541"
    adc = next((prostatex / "ProstateX" / "ProstateX-0001").rglob("*ADC*"))
    (case,) = discover_cases(prostatex / "ProstateX", ["T2", "ADC"], {"T2": uid, "ADC": str(adc)})
    first = case.sources[0]
    assert case.case_id == "ProstateX-0001" and isinstance(first, DicomSeries) and first.uid == uid
    img = load_case(case, ["T2", "ADC"])
    assert img.array.shape == (2, 384, 384, 19)
    assert img.array[1].max() > 0  # ADC resampled onto the T2 grid
    with pytest.raises(UserInputError, match=r"no DICOM series with SeriesInstanceUID 1\.2\.3 under the input folder"):
        discover_cases(prostatex / "ProstateX", ["T2", "ADC"], {"T2": "1.2.3", "ADC": str(adc)})
