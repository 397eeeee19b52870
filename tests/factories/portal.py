import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    password = factory.django.Password("pw-for-tests")

    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        if create and extracted:
            self.groups.add(*Group.objects.filter(name__in=extracted))


class PersonUserFactory(UserFactory):
    """A person's login: the requester role unless `roles` says exactly which (`roles=[]`: none).

    The roles are the world a test starts from, not a change made in it: written straight to the
    membership table, so no role-change audit event is recorded (`groups.add` would record one).
    """

    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        if not create:
            return
        names = ["requester"] if extracted is None else list(extracted)
        through = type(self).groups.through
        through.objects.bulk_create(
            [
                through(user_id=self.pk, group_id=pk)
                for pk in Group.objects.filter(name__in=names).values_list("pk", flat=True)
            ]
        )
