"""``minitx train`` / ``minitx generate``: placeholder until the GPT issue lands."""


def add_parser(sub):
    pass
