"""History: newest first, paged, per user, delete removes rows and files."""

from __future__ import annotations

import pytest

from services.container import Services
from services.images import run_and_collect


@pytest.fixture(scope="module")
def three_jobs(services: Services) -> list[int]:
    ids = []
    for i in range(3):
        req = services.images.validate(prompt=f"job {i}", width=64, height=64, steps=1, seed=i)
        ids.append(run_and_collect(services.images, req).job_id)
    return ids


def test_newest_first_and_paged(services: Services, three_jobs: list[int]) -> None:
    first = services.history.list_jobs(limit=2)
    assert [j["job_id"] for j in first["jobs"]] == three_jobs[::-1][:2]
    assert first["next_before"] == three_jobs[1]
    second = services.history.list_jobs(limit=2, before=first["next_before"])
    assert [j["job_id"] for j in second["jobs"]] == [three_jobs[0]]
    assert second["next_before"] is None
    job = first["jobs"][0]
    assert job["prompt"] == "job 2"
    assert job["seed_used"] == 2
    assert job["status"] == "done"
    assert job["files"][0]["file"].endswith(".png")


def test_jobs_belong_to_their_user(services: Services, three_jobs: list[int]) -> None:
    assert services.history.list_jobs(user="someone-else")["jobs"] == []
    assert services.history.get_job(three_jobs[0], user="someone-else") is None


def test_bad_limit_is_refused(services: Services) -> None:
    with pytest.raises(ValueError, match="between 1 and 200"):
        services.history.list_jobs(limit=0)


def test_delete_removes_the_row_and_its_files(services: Services, three_jobs: list[int]) -> None:
    job = services.history.get_job(three_jobs[0])
    path = services.history.file_path(job["files"][0]["file"])
    assert path.is_file()
    assert services.history.delete_job(three_jobs[0]) is True
    assert services.history.get_job(three_jobs[0]) is None
    assert not path.exists()
    assert services.history.delete_job(three_jobs[0]) is False


def test_image_key_is_found_only_for_its_owner_and_while_the_file_exists(services: Services,
                                                                         three_jobs: list[int]) -> None:
    job = services.history.get_job(three_jobs[2])
    file_id = job["files"][0]["id"]
    key = services.history.image_key(file_id)
    assert key == job["files"][0]["file"]
    assert services.history.image_key(file_id, user="someone-else") is None
    assert services.history.image_key(file_id, user=None) == key  # an admin
    assert services.history.image_key(10**9) is None
    path = services.history.file_path(key)
    path.rename(path.with_suffix(".moved"))
    try:
        assert services.history.image_key(file_id) is None
    finally:
        path.with_suffix(".moved").rename(path)
