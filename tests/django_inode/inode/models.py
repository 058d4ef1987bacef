from django.db import models


class Device(models.Model):
    name = models.CharField(max_length=100)
    serial = models.CharField(max_length=40, unique=True)
    kind = models.CharField(max_length=40)


class Link(models.Model):
    name = models.CharField(max_length=100)
    start = models.ForeignKey(Device, related_name="+", on_delete=models.CASCADE)
    end = models.ForeignKey(Device, related_name="+", on_delete=models.CASCADE)
    length_m = models.IntegerField()


class Measurement(models.Model):
    """A sensor reading: the list that is polled paginated (25 rows, pages of 10)."""
    device = models.ForeignKey(Device, related_name="+", on_delete=models.CASCADE)
    value = models.IntegerField()
