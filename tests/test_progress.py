from samlab.progress import track


def test_track_yields_every_item_and_reports_count_and_rate(capsys):
    assert list(track(range(7), "items", unit="img")) == list(range(7))
    err = capsys.readouterr().err
    assert "items" in err and "7/7" in err and "img/s" in err


def test_track_disabled_prints_nothing(capsys):
    assert list(track(iter([1, 2]), "quiet", enabled=False)) == [1, 2]
    assert capsys.readouterr().err == ""
