"""On the cluster test bed: a user's creation on a node that lacks the image. The node pulls
the real notebook image from the test bed's registry, and the record the user polls through
the users' API says how many layers and bytes it has so far, before the container runs."""

from __future__ import annotations

import base64
import re

import pytest
from rest_framework.test import APIClient

from ipynbsrv_backends.models import Image

from ..conftest import RUN_ID
from ..notebook import notebook_image  # noqa: F401 - fixture
from ..testbed import cluster, cluster_nodes  # noqa: F401 - fixtures
from ..utils import load_image_into, wait_for
from .test_cluster import node_engine

pytestmark = [pytest.mark.engine, pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

PULLING = r"pulling {ref} on n2: \d+ of \d+ layers, [\d.]+ (of [\d.]+ MB \(\d+ %\)|MB of [\d.]+ MB known so far)"




def test_polling_a_creation_shows_the_pull_of_the_notebook_image(cluster, cluster_nodes, notebook_image,
                                                                  raw_docker, django_user_model):
    n1, n2 = cluster_nodes
    wanted = raw_docker.images.get(notebook_image).id
    repo = f"{cluster.registry}/pytest-{RUN_ID}/notebook"
    ref = f"{repo}:progress"
    on_n1, on_n2 = node_engine(cluster, n1), node_engine(cluster, n2)
    kept_tags: list[str] = []
    try:
        # Into the test bed's registry through n1, whose engine trusts it.
        load_image_into(cluster.sockets[cluster.addresses.index(n1.address)], notebook_image)
        on_n1.images.get(wanted).tag(repo, "progress")
        on_n1.images.push(repo, tag="progress")
        on_n1.images.remove(ref)
        # n2 lacks it (its tags are put back at the end)
        for image in on_n2.images.list():
            if image.id == wanted:
                kept_tags += image.tags
                for tag in image.tags:
                    on_n2.images.remove(tag, force=True)
        assert not any(image.id == wanted for image in on_n2.images.list())

        staff = django_user_model.objects.create_user("carol", password="carol-password", is_staff=True)
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"carol:carol-password").decode())
        image = Image.objects.create(name="jupyter", ref=ref, public=True)
        response = api.post("/api/containers/", {"name": "nb", "image": image.pk, "node": "n2"}, format="json")
        assert response.status_code == 202, response.content
        location = response["Location"]
        seen: list[str] = [response.json()["progress"]]

        def settled() -> dict | None:
            record = api.get(location).json()
            if record["status"] == "creating":
                seen.append(record["progress"])
                return None
            return record

        record = wait_for(settled, timeout=300, interval=0.1, what="the creation on n2 to end")
        assert record["status"] == "running", record
        assert record["owner"] == staff.get_username()
        pulls = [text for text in seen if re.fullmatch(PULLING.format(ref=re.escape(ref)), text)]
        assert pulls, f"no pull progress among {sorted(set(seen))}"
        print(f"\nprogress seen while creating ({len(seen)} polls):\n  " + "\n  ".join(dict.fromkeys(seen)))
    finally:
        if kept_tags and not any(image.id == wanted for image in on_n2.images.list()):
            load_image_into(cluster.sockets[cluster.addresses.index(n2.address)], notebook_image)
        for tag in kept_tags:
            name, _, tag_name = tag.rpartition(":")
            on_n2.images.get(wanted).tag(name, tag_name)
        on_n1.close()
        on_n2.close()
