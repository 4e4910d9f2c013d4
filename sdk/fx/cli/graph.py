"""placeholder"""


def register(add):
    pass
