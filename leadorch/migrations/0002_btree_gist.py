from django.contrib.postgres.operations import BtreeGistExtension
from django.db import migrations


class Migration(migrations.Migration):
    """btree_gist, for exclusion constraints that mix equality and range overlap
    (one bay cannot hold two overlapping appointments).

    Created from this shared app so that it lives in the public schema: created
    from a tenant app it would land in the first tenant's schema, and dropping that
    tenant would drop it, and with it every other tenant's constraints.
    """

    dependencies = [("leadorch", "0001_initial")]

    operations = [BtreeGistExtension()]
