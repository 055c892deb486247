from streams.redelivery import HandledOffsets

RAW = ("raw", 2)
CHECKPOINTS = ("checkpoints", 2)


def deliveries(*positions: tuple[tuple[str, int], int]) -> list[tuple[tuple[str, int], int, str]]:
    return [(tp, offset, f"{tp[0]}/{offset}") for tp, offset in positions]


def test_a_message_handled_before_is_skipped_when_a_seek_delivers_it_again():
    handled = HandledOffsets()
    fresh, again = handled.first_deliveries(deliveries((CHECKPOINTS, 0), (RAW, 241)))
    assert (fresh, again) == (["checkpoints/0", "raw/241"], [])
    handled.handled([(CHECKPOINTS, 0), (RAW, 241)])

    fresh, again = handled.first_deliveries(deliveries((RAW, 239), (CHECKPOINTS, 0), (RAW, 240), (RAW, 241)))
    assert fresh == ["raw/239", "raw/240"]
    assert again == [(CHECKPOINTS, 0), (RAW, 241)]


def test_the_second_copy_within_one_batch_is_skipped():
    fresh, again = HandledOffsets().first_deliveries(deliveries((RAW, 5), (RAW, 6), (RAW, 5)))
    assert (fresh, again) == (["raw/5", "raw/6"], [(RAW, 5)])


def test_a_batch_not_recorded_as_handled_is_delivered_in_full_again():
    """A batch that failed is not recorded: its messages are handled when they come again."""
    handled = HandledOffsets()
    handled.first_deliveries(deliveries((RAW, 0), (RAW, 1)))
    assert handled.first_deliveries(deliveries((RAW, 0), (RAW, 1))) == (["raw/0", "raw/1"], [])


def test_offsets_below_the_commit_and_partitions_not_held_are_forgotten():
    handled = HandledOffsets()
    handled.handled([(RAW, 3), (RAW, 4), (RAW, 7), (CHECKPOINTS, 1)])
    handled.forget_committed({RAW: 5})
    assert len(handled) == 1
    assert handled.first_deliveries(deliveries((RAW, 4), (RAW, 7), (CHECKPOINTS, 1))) == (
        ["raw/4", "checkpoints/1"],
        [(RAW, 7)],
    )
