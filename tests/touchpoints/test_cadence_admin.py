"""The cadence editor: each step previewed for a sample lead; a broken template is refused."""

from __future__ import annotations

import pytest

from tests.factories import SuperUserFactory
from touchpoints import services
from touchpoints.models import CadenceStep


@pytest.fixture
def boss(tenant_client):
    tenant_client.force_login(SuperUserFactory(username="boss"))
    return tenant_client


def test_the_editor_previews_every_step_for_a_sample_lead(boss):
    cadence = services.cadence_default_ensure()
    page = boss.get(f"/admin/touchpoints/cadence/{cadence.pk}/change/").content.decode()
    steps = CadenceStep.objects.filter(cadence=cadence).count()
    # One per step, and one in the blank form for a new step.
    assert page.count('class="form-row field-preview"') == steps + 1
    assert "Jordan" in page  # the sample lead's first name, filled in
    assert "https://tintworld.example.com/c/sample-token" in page


def test_a_step_whose_template_fails_is_not_saved(boss):
    cadence = services.cadence_default_ensure()
    step = CadenceStep.objects.filter(cadence=cadence).order_by("position").first()
    response = boss.post(
        f"/admin/touchpoints/cadencestep/{step.pk}/change/",
        {
            "cadence": cadence.pk,
            "position": step.position,
            "channel": step.channel,
            "delay_minutes": step.delay_minutes,
            "subject": step.subject,
            "template": "Hi {{ first_name|nosuchfilter }}",
        },
    )
    assert response.status_code == 200
    assert "The template does not compile" in response.content.decode()
    step.refresh_from_db()
    assert "nosuchfilter" not in step.template
