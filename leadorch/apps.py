from django.apps import AppConfig


class LeadorchConfig(AppConfig):
    name = "leadorch"
    verbose_name = "Platform operations"
