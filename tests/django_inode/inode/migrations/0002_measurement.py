from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('inode', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='Measurement',
            fields=[
                ('id', models.AutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('device', models.ForeignKey(on_delete=models.CASCADE, related_name='+', to='inode.device')),
                ('value', models.IntegerField()),
            ],
        ),
    ]
