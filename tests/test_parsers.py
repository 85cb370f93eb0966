"""Parsers of user input: array specs, walltimes and memory sizes, job ids, and PBS/Slurm/LSF/HYPER directives.

Property tests (hypothesis) check round trips and that malformed input only ever raises UsageError; example
tests pin exact values and messages. The tests at the end pin inputs that once crashed a parser or gave a wrong
answer: non-ASCII digits and case-folded unit letters, numbers too long for float() or int(), one-index ranges
with a step, and line separators other than \\n.
"""

from __future__ import annotations

import sys

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hyper.errors import UsageError
from hyper.parsing.arrays import MAX_INDEX, ArraySpec, Range, parse_array
from hyper.parsing.directives import (
    TABLES,
    Dependency,
    Directives,
    parse_dependency,
    parse_directives,
    parse_options,
)
from hyper.parsing.durations import format_duration, format_memory, parse_duration, parse_memory
from hyper.parsing.jobids import JobRef, format_job_id, parse_job_id, parse_job_ids

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def one(start: int, stop: int | None = None, step: int = 1, limit: int | None = None) -> ArraySpec:
    """A one-range ArraySpec, written out so expected values do not go through the parser under test."""
    return ArraySpec((Range(start, start if stop is None else stop, step),), limit)


def usage_error(call, *args) -> UsageError:
    with pytest.raises(UsageError) as info:
        call(*args)
    assert info.value.exit_code == 2
    return info.value


# ================================================================ strategies


@st.composite
def array_specs(draw, small: bool = True) -> ArraySpec:
    """Ascending, non-overlapping ranges in canonical form (a one-index range has step 1; stop is an index)."""
    gap_max, count_max, step_max, ranges_max = (6, 8, 5, 4) if small else (10**8, 10**6, 10**4, 6)
    ranges: list[Range] = []
    next_free = 0
    for _ in range(draw(st.integers(1, ranges_max))):
        start = next_free + draw(st.integers(0, gap_max))
        count = draw(st.integers(1, count_max))
        step = 1 if count == 1 else draw(st.integers(1, step_max))
        stop = start + (count - 1) * step
        if stop > MAX_INDEX:
            break
        ranges.append(Range(start, stop, step))
        next_free = stop + 1
    assume(ranges)
    limit = draw(st.none() | st.integers(1, 10**6))
    return ArraySpec(tuple(ranges), limit)


# Characters that once tripped the parsers: digits that str.isdigit() accepts but int() and regex \d do not
# ('²', '①'), a digit that \d and int() accept ('١'), the four non-ASCII letters that re.IGNORECASE matches to
# ASCII unit letters, and line separators of str.splitlines() other than \n.
_TRICKY_CHARS = ["\u00b2", "\u2460", "\u0661", "\u0130", "\u0131", "\u017f", "\u212a", "\f", "\v", "\x85", "\u2028"]


_TOKENS = list("0123456789-_,:%[]. ()&|!?+=@/\"'\\#\t\n\r") + [
    "done(", "exit(", "ended(", "afterok:", "afterany:", "walltime=", "select=", "mem=", "ncpus=", "ngpus=",
    "depend=", "gb", "GiB", "h", "m", "s", "d", "min", "sec", "k", "w", "1-10", "12[]", "12_3", "1:30:00",
    "9" * 400, "1" * 4400,  # past float's range and int()'s 4300-digit limit
    *_TRICKY_CHARS,
]
fuzz_text = st.lists(st.one_of(st.sampled_from(_TOKENS), st.characters()), max_size=16).map("".join)
_OPTIONS = sorted({option for table in TABLES.values() for option in table})
fuzz_word = st.one_of(
    st.sampled_from(_OPTIONS), fuzz_text,
    st.builds(lambda o, v: f"{o}={v}", st.sampled_from(_OPTIONS), fuzz_text),
)
fuzz_line = st.builds(
    lambda prefix, words: prefix + " " + " ".join(words),
    st.sampled_from(["#PBS", "#SBATCH", "#BSUB", "#HYPER", "#PBS\t", "#", "#!/bin/sh", "echo"]),
    st.lists(fuzz_word, max_size=4),
)
fuzz_script = st.lists(st.one_of(fuzz_line, fuzz_text), max_size=5).map("\n".join)

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,14}", fullmatch=True)
queues = st.from_regex(r"[a-z][a-z0-9_]{0,9}", fullmatch=True)


# ================================================================ arrays: properties


@FAST
@given(array_specs(small=False))
def test_array_text_round_trips(spec):
    assert parse_array(spec.text) == spec
    assert parse_array(f"[{spec.text}]") == spec
    assert str(spec) == spec.text


@FAST
@given(array_specs(small=True))
def test_small_array_listing_agrees_with_index_at_position_of_and_count(spec):
    listed = list(spec)
    expected = [i for r in spec.ranges for i in range(r.start, r.stop + 1, r.step)]
    assert listed == expected
    assert listed == sorted(set(listed))  # ascending, no duplicates
    assert spec.count == len(listed) == len(spec)
    for position, index in enumerate(listed):
        assert spec.index_at(position) == index
        assert spec.position_of(index) == position
        assert index in spec
    for index in set(range(-2, listed[-1] + 3)) - set(listed):
        assert spec.position_of(index) is None
        assert index not in spec
    for position in (-1, spec.count):
        with pytest.raises(IndexError):
            spec.index_at(position)


@FAST
@given(array_specs(small=False), st.data())
def test_large_array_index_at_and_position_of_are_inverse(spec, data):
    assert spec.count == sum(len(range(r.start, r.stop + 1, r.step)) for r in spec.ranges)
    assert spec.index_at(0) == spec.ranges[0].start
    assert spec.index_at(spec.count - 1) == spec.ranges[-1].stop
    for _ in range(5):
        position = data.draw(st.integers(0, spec.count - 1))
        index = spec.index_at(position)
        assert spec.position_of(index) == position
        # indices ascend, so index + 1 is either the next element or no element at all
        nxt = spec.index_at(position + 1) if position + 1 < spec.count else None
        assert spec.position_of(index + 1) == (position + 1 if nxt == index + 1 else None)


# ================================================================ arrays: examples


def test_pbs_array_with_step_and_limit():
    spec = parse_array("1-1000:2%50")
    assert spec == one(1, 999, 2, limit=50)  # stop becomes the last real index
    assert spec.count == 500
    assert spec.limit == 50
    assert spec.text == "1-999:2%50"
    assert spec.index_at(0) == 1 and spec.index_at(499) == 999
    assert spec.position_of(999) == 499 and spec.position_of(2) is None and spec.position_of(1001) is None


def test_slurm_array_with_list_and_limit():
    spec = parse_array("0-15,20%4")
    assert spec == ArraySpec((Range(0, 15), Range(20, 20)), 4)
    assert list(spec) == [*range(16), 20]
    assert spec.count == 17
    assert spec.index_at(16) == 20
    assert spec.position_of(20) == 16
    assert 17 not in spec and 20 in spec and "20" not in spec
    assert spec.text == "0-15,20%4"


@pytest.mark.parametrize("text, expected", [
    ("7", one(7)),
    ("[1-3]", one(1, 3)),
    (" 1 - 3 ", one(1, 3)),
    ("1-10:4", one(1, 9, 4)),
    ("0", one(0)),
    (str(MAX_INDEX), one(MAX_INDEX)),
])
def test_array_examples(text, expected):
    assert parse_array(text) == expected
    assert parse_array(text).limit is None


def test_huge_array_is_not_listed():
    spec = parse_array(f"0-{MAX_INDEX}")
    assert spec.count == MAX_INDEX + 1
    assert spec.index_at(MAX_INDEX) == MAX_INDEX
    assert spec.position_of(123_456_789) == 123_456_789


@pytest.mark.parametrize("text, message, hint", [
    ("5-1", "array range '5-1' runs backwards at '5-1'", "write 1-5"),
    ("", "array range '' is empty", None),
    ("[]", "array range '[]' is empty", None),
    ("1-5%0", "array range '1-5%0' has a bad limit '%0'", None),
    ("1-5%", "array range '1-5%' has a bad limit '%'", None),
    ("1-5:0", "array range '1-5:0' has step 0 at '1-5:0'", "the step after : must be 1 or more"),
    ("0-15,10", "array range '0-15,10' overlaps or is out of order at '10'", None),
    ("3,3", "array range '3,3' overlaps or is out of order at '3'", None),
    ("2147483648", "array range '2147483648' has an index above 2147483647", "use smaller indices"),
    ("a-b", "array range 'a-b' does not parse at 'a-b'", None),
    ("1-5,", "array range '1-5,' does not parse at ''", None),
])
def test_array_errors(text, message, hint):
    err = usage_error(parse_array, text)
    assert err.message == message
    if hint is not None:
        assert err.hint == hint


# ================================================================ durations and memory


@FAST
@given(st.integers(1, 10**9))
def test_duration_round_trips_through_format(seconds):
    text = format_duration(seconds)
    assert parse_duration(text) == seconds
    assert parse_duration(text, "m", "hm") == seconds  # three parts mean H:M:S in every family


@FAST
@given(st.integers(0, 400), st.integers(0, 23), st.integers(0, 59), st.integers(0, 59))
def test_slurm_day_form(days, h, m, s):
    total = days * 86400 + h * 3600 + m * 60 + s
    assume(total > 0)
    assert parse_duration(f"{days}-{h:02d}:{m:02d}:{s:02d}", "m") == total


@pytest.mark.parametrize("args, seconds", [
    (("1:30:00",), 5400),
    (("3600",), 3600),  # PBS: a plain number is seconds
    (("90", "m"), 5400),  # Slurm and LSF: minutes
    (("1:30",), 90),  # PBS/Slurm: MM:SS
    (("1:30", "m", "hm"), 5400),  # LSF: HH:MM
    (("1-12:00:00", "m"), 129600),
    (("1-12", "m"), 129600),  # D-HH
    (("2-0:30", "m"), 174600),  # D-HH:MM
    (("1h30m",), 5400),
    (("1h 30m",), 5400),
    (("2H",), 7200),
    (("1d2hr3min4sec",), 93784),
    (("1.5", "m"), 90),
    (("100:00:00",), 360000),
])
def test_duration_examples(args, seconds):
    assert parse_duration(*args) == seconds


@pytest.mark.parametrize("text, message", [
    ("abc", "walltime 'abc' does not parse"),
    ("", "walltime '' does not parse"),
    ("1:2:3:4", "walltime '1:2:3:4' does not parse"),
    ("1h30", "walltime '1h30' does not parse"),
    ("-5", "walltime '-5' does not parse"),
    ("0:00:00", "walltime '0:00:00' is zero"),
    ("0", "walltime '0' is zero"),
    ("0-0", "walltime '0-0' is zero"),
])
def test_duration_errors(text, message):
    assert usage_error(parse_duration, text).message == message


def test_format_duration():
    assert format_duration(5400) == "01:30:00"
    assert format_duration(90061) == "25:01:01"
    assert format_duration(59.9) == "00:00:59"
    assert format_duration(-5) == "00:00:00"
    assert format_duration(None) == "--"


@pytest.mark.parametrize("args, mib", [
    (("4gb", ""), 4096),  # PBS
    (("4G",), 4096),  # Slurm
    (("16GiB",), 16384),
    (("512",), 512),  # Slurm/LSF: a plain number is MiB
    (("1048576", ""), 1),  # PBS: a plain number is bytes
    (("1", ""), 1),  # rounded up
    (("1w", ""), 1),  # PBS words
    (("1.5g",), 1536),
    (("1tb",), 1048576),
    (("  2 GB ",), 2048),
    (("2048kb",), 2),
])
def test_memory_examples(args, mib):
    assert parse_memory(*args) == mib


def test_memory_errors():
    assert usage_error(parse_memory, "lots").message == "memory 'lots' does not parse"
    assert usage_error(parse_memory, "0").message == "memory '0' is zero"
    assert usage_error(parse_memory, "4 x").message == "memory '4 x' does not parse"


@FAST
@given(st.one_of(st.integers(1, 1023), st.integers(1, 10**5).map(lambda g: g * 1024)))
def test_memory_round_trips_when_format_is_exact(mib):
    assert parse_memory(format_memory(mib)) == mib


def test_format_memory():
    assert format_memory(None) == "--"
    assert format_memory(512) == "512MiB"
    assert format_memory(1024) == "1GiB"
    assert format_memory(1536) == "1.5GiB"
    assert format_memory(102400) == "100GiB"


# ================================================================ job ids


@FAST
@given(st.integers(0, 10**12), st.none() | st.integers(0, MAX_INDEX), st.booleans())
def test_job_id_round_trips_through_format(job_id, index, array):
    text = format_job_id(job_id, index, array)
    if index is not None:
        expected = JobRef(job_id, one(index))
        assert text == f"{job_id}[{index}]"
        assert parse_job_id(f"{job_id}_{index}") == expected  # Slurm spelling, same element
    else:
        expected = JobRef(job_id, None, array)
    assert parse_job_id(text) == expected
    assert parse_job_id(f"{text}.server.example") == expected
    assert parse_job_ids([text]) == [expected]
    assert expected.text == text


@FAST
@given(st.integers(0, 10**9), array_specs(small=False))
def test_job_ref_with_indices_round_trips(job_id, spec):
    ref = JobRef(job_id, spec)
    assert parse_job_id(ref.text) == ref
    assert str(ref) == f"{job_id}[{spec.text}]"


@pytest.mark.parametrize("word, refs", [
    ("12", [JobRef(12)]),
    ("12.server", [JobRef(12)]),
    ("12[]", [JobRef(12, None, True)]),
    ("12[].server", [JobRef(12, None, True)]),
    ("12[3]", [JobRef(12, one(3))]),
    ("12[1-5]", [JobRef(12, one(1, 5))]),
    ("12[1,3]", [JobRef(12, ArraySpec((Range(1, 1), Range(3, 3))))]),
    ("12_3", [JobRef(12, one(3))]),
    ("12_[1-5]", [JobRef(12, one(1, 5))]),
    ("100-103", [JobRef(100), JobRef(101), JobRef(102), JobRef(103)]),
    ("12,13", [JobRef(12), JobRef(13)]),
    (" 7 ", [JobRef(7)]),
])
def test_job_id_examples(word, refs):
    assert parse_job_ids([word]) == refs


def test_job_ids_of_several_words_keep_order():
    assert parse_job_ids(["3", "1 2", "5[]"]) == [JobRef(3), JobRef(1), JobRef(2), JobRef(5, None, True)]
    assert parse_job_ids([]) == []


@pytest.mark.parametrize("word, message", [
    ("abc", "job id 'abc' does not parse"),
    ("12[5-1]", "job id '12[5-1]' does not parse"),
    ("12_", "job id '12_' does not parse"),
    ("-3", "job id '-3' does not parse"),
    ("103-100", "job id range '103-100' runs backwards"),
    ("1-100001", "job id range '1-100001' spans more than 100000 ids"),
])
def test_job_id_errors(word, message):
    err = usage_error(parse_job_ids, [word])
    assert err.message == message


def test_job_id_error_hint_and_single_id():
    err = usage_error(parse_job_ids, ["12", "abc"])  # nothing is returned when one word fails
    assert err.message == "job id 'abc' does not parse"
    assert err.hint == "job ids look like 12, 12[], 12[3], 12[1-5], 12_3 or a range 100-110"
    assert usage_error(parse_job_id, "100-103").message == "job id '100-103' names 4 jobs"
    assert parse_job_id("100-100") == JobRef(100)


def test_format_job_id():
    assert format_job_id(12) == "12"
    assert format_job_id(12, 3) == "12[3]"
    assert format_job_id(12, 0) == "12[0]"
    assert format_job_id(12, array=True) == "12[]"


# ================================================================ dependencies


def test_pbs_dependency():
    assert parse_dependency("afterok:12:13,afterany:14[]") == [
        Dependency("afterok", JobRef(12)), Dependency("afterok", JobRef(13)),
        Dependency("afterany", JobRef(14, None, True)),
    ]
    assert parse_dependency("afterokarray:5[]") == [Dependency("afterok", JobRef(5, None, True))]
    assert parse_dependency("AfterNotOk:7") == [Dependency("afternotok", JobRef(7))]
    assert Dependency("afterany", JobRef(14, None, True)).text == "afterany:14[]"


def test_slurm_dependency():
    assert parse_dependency("afterok:12_3:13+5", "SBATCH") == [
        Dependency("afterok", JobRef(12, one(3))), Dependency("afterok", JobRef(13))]
    assert "?" in usage_error(parse_dependency, "afterok:12?afterany:13", "SBATCH").message


def test_lsf_dependency():
    assert parse_dependency("done(12) && exit(13) && ended( 14[] )", "BSUB") == [
        Dependency("afterok", JobRef(12)), Dependency("afternotok", JobRef(13)),
        Dependency("afterany", JobRef(14, None, True)),
    ]
    assert usage_error(parse_dependency, "done(12) || exit(13)", "BSUB").message == \
        "dependency 'done(12) || exit(13)' uses || or !"
    assert usage_error(parse_dependency, "started(12)", "BSUB").message == \
        "dependency term 'started(12)' is not supported"


@pytest.mark.parametrize("text, message", [
    ("after:12", "dependency type 'after' in 'after:12' is not supported"),
    ("afterok", "dependency 'afterok' names no job"),
    ("afterok:", "dependency 'afterok:' names no job"),
    ("afterok:x", "dependency 'afterok:x': job id 'x' does not parse"),
    ("afterok:1-3", "dependency 'afterok:1-3': job id '1-3' does not parse"),  # one job per id
    (",", "dependency ',' is empty"),
])
def test_dependency_errors(text, message):
    assert usage_error(parse_dependency, text).message == message


# ================================================================ directives: properties


@FAST
@given(names, queues, array_specs(small=False), st.integers(1, 10**7), st.booleans(), names)
def test_generated_pbs_script_is_recovered(name, queue, spec, walltime, glued, later_name):
    n = f"-N{name}" if glued else f"-N {name}"
    script = (
        "#!/bin/bash\n"
        f"#PBS {n} -q {queue}\n"
        "# a plain comment\n"
        "\n"
        f"#PBS -J {spec.text}\n"
        f"#PBS -l walltime={format_duration(walltime)}\n"
        "echo start\n"
        f"#PBS -N {later_name}\n"  # after the first command: not a directive any more
    )
    d = parse_directives(script, "job.sh")
    assert d == Directives(name=name, queue=queue, array=spec, walltime=walltime)


@FAST
@given(names, queues, array_specs(small=True), st.integers(0, 30), st.integers(0, 23), st.integers(0, 59),
       st.integers(1, 64))
def test_generated_sbatch_script_is_recovered(name, queue, spec, days, hours, minutes, cpus):
    assume(days or hours or minutes)
    script = (
        "#!/bin/bash\n"
        f"#SBATCH --job-name={name} --partition {queue}\n"
        f"#SBATCH --array={spec.text}\n"
        f"#SBATCH -t {days}-{hours}:{minutes:02d} -c {cpus}\n"
        "srun true\n"
    )
    assert parse_directives(script, "job.sh") == Directives(
        name=name, queue=queue, array=spec, walltime=days * 86400 + hours * 3600 + minutes * 60, vcpus=cpus,
        export_all=True, join="oe")  # Slurm joins stderr into the output file unless -e names another


# ================================================================ directives: example tests


def parse(script: str) -> Directives:
    return parse_directives(script, "job.sh")


def test_sbatch_J_is_a_name_but_pbs_J_is_an_array():
    assert parse("#SBATCH -J x\n") == Directives(name="x", export_all=True, join="oe")
    assert parse("#PBS -J 1-10\n") == Directives(array=one(1, 10))
    assert parse("#PBS -t 0-3%2\n") == Directives(array=one(0, 3, limit=2))  # Torque
    assert parse("#SBATCH --array=0-15,20%4\n").array == ArraySpec((Range(0, 15), Range(20, 20)), 4)
    assert parse("#SBATCH -a 3\n").array == one(3)


def test_sbatch_time_is_minutes():
    assert parse("#SBATCH --time=90\n").walltime == 5400
    assert parse("#SBATCH -t 1-00:00:00\n").walltime == 86400
    assert parse("#SBATCH -t 1:30\n").walltime == 90  # Slurm MM:SS


def test_bsub_walltime_is_hours_minutes():
    assert parse("#BSUB -W 1:30\n") == Directives(walltime=5400)
    assert parse("#BSUB -W 90\n").walltime == 5400


def test_bsub_name_carries_the_array():
    assert parse('#BSUB -J "name[1-10]%2"\n') == Directives(name="name", array=one(1, 10, limit=2))
    assert parse("#BSUB -J plain\n") == Directives(name="plain")
    assert parse('#BSUB -J "[1-3]"\n') == Directives(array=one(1, 3))
    assert usage_error(parse, "#BSUB -J 'a[1-3'\n").message == "job.sh:1: -J 'a[1-3' does not parse"


def test_hyper_r_is_retries_but_pbs_r_is_rerunnable():
    assert parse("#HYPER -r 3\n") == Directives(retries=3)
    assert parse("#HYPER -n seed -d gpu-def --queue fast\n") == Directives(name="seed", definition="gpu-def",
                                                                           queue="fast")
    assert parse("#PBS -d /scratch\n") == Directives(chdir="/scratch")  # PBS/Torque -d is the directory
    err = usage_error(parse, "#!/bin/sh\n#PBS -r 3\n")
    assert err.message == "job.sh:2: -r takes y or n (rerunnable), not '3'"
    assert "-r" in err.message
    assert err.hint == "for a number of retries use --retries N or `#HYPER -r N`"
    assert parse("#PBS -r y\n").rerunnable is True
    assert parse("#PBS -r n\n").rerunnable is False
    assert usage_error(parse, "#HYPER -r -1\n").message == "job.sh:1: retries -1 is out of range"


def test_pbs_resources():
    assert parse("#PBS -l select=1:ncpus=4:ngpus=1:mem=4gb\n") == Directives(vcpus=4, gpus=1, memory_mib=4096)
    assert parse("#PBS -l walltime=1:30:00,ncpus=2,mem=512mb\n") == Directives(walltime=5400, vcpus=2,
                                                                               memory_mib=512)
    assert parse("#PBS -l nodes=1:ppn=8\n") == Directives(vcpus=8)
    assert parse("#PBS -l place=scatter\n") == Directives(ignored=["-l place=scatter"])
    assert parse("#PBS -lwalltime=60\n").walltime == 60  # glued, and a plain number is seconds
    assert usage_error(parse, "#PBS -l select=2:ncpus=1\n").message == "job.sh:1: select=2 asks for several nodes"
    assert usage_error(parse, "#PBS -l foo=1\n").message == "job.sh:1: resource 'foo' is not known"
    assert usage_error(parse, "#PBS -l walltime\n").message == "job.sh:1: resource 'walltime' has no value"


def test_pbs_environment_list():
    assert parse("#PBS -v A=1,B\n") == Directives(env={"A": "1", "B": None})
    assert parse("#PBS -v 'A=1,2,C=\"x y\"'\n").env == {"A": "1,2", "C": "x y"}
    assert parse("#PBS -V\n") == Directives(export_all=True)
    assert usage_error(parse, "#PBS -v 1A=2\n").message == "job.sh:1: environment variable name '1A' is not valid"


def test_pbs_dependency_directive():
    d = parse("#PBS -W depend=afterok:12:13,afterany:14[]\n")
    assert d == Directives(depend=[Dependency("afterok", JobRef(12)), Dependency("afterok", JobRef(13)),
                                   Dependency("afterany", JobRef(14, None, True))])
    # dependencies accumulate over lines rather than override
    d = parse("#PBS -W depend=afterok:1\n#PBS -W depend=afterany:2\n")
    assert d.depend == [Dependency("afterok", JobRef(1)), Dependency("afterany", JobRef(2))]
    assert usage_error(parse, "#PBS -W block=true\n").message == \
        "job.sh:1: -W block=true only works on the qsub command line"


def test_lsf_dependency_directive():
    assert parse('#BSUB -w "done(12) && exit(13)"\n') == Directives(
        depend=[Dependency("afterok", JobRef(12)), Dependency("afternotok", JobRef(13))])


def test_lsf_other_options():
    d = parse("#BSUB -n 4 -M 4GB -gpu num=2 -q short -o out.%J -rn\n")
    assert d == Directives(vcpus=4, memory_mib=4096, gpus=2, queue="short", output="out.%J", rerunnable=False)
    assert parse("#BSUB -env all\n").export_all is True


def test_lsf_resource_requirements():
    assert parse('#BSUB -R "rusage[mem=3000]"\n') == Directives(memory_mib=3000)
    d = parse('#BSUB -R "select[mem>100] rusage[mem=2GB:ngpus_physical=1] span[hosts=1]"\n')
    assert (d.memory_mib, d.gpus) == (2048, 1)
    assert d.ignored == ["-R select[mem>100] rusage[mem=2GB:ngpus_physical=1] span[hosts=1]"]
    assert usage_error(parse, '#BSUB -R "span[ptile=4]"\n').message == (
        "job.sh:1: -R 'span[ptile=4]' spreads the job over several hosts")


def test_directives_stop_at_first_executable_line():
    script = "#!/bin/bash\n#PBS -N before\n\n# comment\n  #PBS -q q1\nexport X=1\n#PBS -N after\n#PBS -Q bad\n"
    assert parse(script) == Directives(name="before", queue="q1")


def test_later_lines_override_earlier_ones():
    assert parse("#PBS -N a\n#PBS -N b -q x\n#PBS -q y\n") == Directives(name="b", queue="y")
    assert parse("#PBS -N a\n#SBATCH -J b\n").name == "b"


def test_sbatch_defaults():
    assert parse("#SBATCH -o out.txt\n") == Directives(output="out.txt", join="oe", export_all=True)
    assert parse("#SBATCH -o out.txt -e err.txt\n") == Directives(output="out.txt", error="err.txt",
                                                                   export_all=True)
    assert parse("#SBATCH --export=NONE\n").export_all is False
    assert parse("#SBATCH --export=A=1,B\n") == Directives(export_all=False, env={"A": "1", "B": None}, join="oe")
    # PBS has none of these defaults
    assert parse("#PBS -o out.txt\n") == Directives(output="out.txt")


def test_pbs_output_queue_and_misc():
    d = parse("#PBS -o host:/tmp/out -e /tmp/err -j oe -q work@server -h -p 10 # trailing comment\n")
    assert d == Directives(output="/tmp/out", error="/tmp/err", join="oe", queue="work", hold=True, priority=10)
    assert parse("#PBS -N x\r\n#PBS -q y\r\n") == Directives(name="x", queue="y")  # CRLF
    assert parse("#PBS\t-N tabbed\n").name == "tabbed"
    assert parse("#PBS -m abe -M me@example.com\n").ignored == ["-m abe", "-M me@example.com"]


@pytest.mark.parametrize("script, message", [
    ("#!/bin/sh\n#PBS -N ok\n\n#PBS -l walltime=abc\n", "job.sh:4: walltime 'abc' does not parse"),
    ("#PBS -J 5-1\n", "job.sh:1: array range '5-1' runs backwards at '5-1'"),
    ("#PBS -N ok\n#PBS \"unclosed\n", "job.sh:2: No closing quotation"),
    ("#PBS -Q x\n", "job.sh:1: PBS option -Q is not known"),
    ("#SBATCH --bogus\n", "job.sh:1: SBATCH option --bogus is not known"),
    ("#PBS -N\n", "job.sh:1: PBS option -N needs a value"),
    ("#PBS -V=1\n", "job.sh:1: PBS option -V=1 is not known"),
    ("#SBATCH --hold=1\n", "job.sh:1: SBATCH option --hold takes no value"),
    ("#PBS name\n", "job.sh:1: unexpected 'name' in PBS options"),
    ("#PBS -j x\n", "job.sh:1: -j takes oe, eo or n, not 'x'"),
    ("#PBS -p 2000\n", "job.sh:1: priority 2000 is out of range"),
    ("#SBATCH -N 2\n", "job.sh:1: --nodes=2 asks for several nodes"),
    ("#PBS -a 1200\n", "job.sh:1: -a (deferred start time) is not supported"),
])
def test_malformed_directives_name_file_and_line(script, message):
    err = usage_error(parse, script)
    assert err.message == message
    assert err.message.startswith("job.sh:")


def test_array_error_message_quotes_the_range():
    err = usage_error(parse, "#PBS -J 5-1\n")
    assert "'5-1'" in err.message
    assert err.hint == "write 1-5"


def test_parse_options_command_line():
    assert parse_options(["-N", "x", "-J", "1-3", "-l", "ncpus=2"]) == Directives(name="x", array=one(1, 3),
                                                                                   vcpus=2)
    assert parse_options(["--job-name=y", "--mem=2G"], "SBATCH") == Directives(name="y", memory_mib=2048)
    into = Directives(name="keep")
    assert parse_options(["-q", "q"], into=into) is into and into == Directives(name="keep", queue="q")
    assert usage_error(parse_options, ["-r", "3"]).message == "-r takes y or n (rerunnable), not '3'"
    assert usage_error(parse_options, ["-r", "3"], "PBS", "cli").message.startswith("cli: ")


# ================================================================ arbitrary input: only UsageError


def only_usage_error(call, *args) -> None:
    try:
        call(*args)
    except UsageError as exc:
        assert isinstance(exc.message, str) and exc.message
        assert exc.exit_code == 2


@settings(max_examples=150, deadline=None)
@given(fuzz_text, st.sampled_from(["s", "m", "h"]), st.sampled_from(["ms", "hm"]), st.sampled_from(["", "m"]))
def test_arbitrary_text_only_raises_usage_error(text, plain_unit, two_parts, memory_unit):
    only_usage_error(parse_array, text)
    only_usage_error(parse_job_ids, [text])
    only_usage_error(parse_job_ids, text.split(" "))
    only_usage_error(parse_duration, text, plain_unit, two_parts)
    only_usage_error(parse_memory, text, memory_unit)
    for style in ("PBS", "SBATCH", "BSUB"):
        only_usage_error(parse_dependency, text, style)


@settings(max_examples=100, deadline=None)
@given(fuzz_script)
def test_arbitrary_script_only_raises_usage_error(script):
    only_usage_error(parse_directives, script, "job.sh")


@settings(max_examples=100, deadline=None)
@given(st.lists(fuzz_word, max_size=5), st.sampled_from(sorted(TABLES)))
def test_arbitrary_options_only_raise_usage_error(words, family):
    only_usage_error(parse_options, words, family, "cli")


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=30))
def test_fully_arbitrary_unicode_only_raises_usage_error(text):
    only_usage_error(parse_array, text)
    only_usage_error(parse_job_ids, [text])
    only_usage_error(parse_duration, text)
    only_usage_error(parse_memory, text)
    only_usage_error(parse_directives, text, "job.sh")


# ================================================================ inputs that once crashed or misparsed


@pytest.mark.parametrize("call, args", [
    (parse_array, ("1-10%²",)),
    (parse_job_ids, (["12[1%²]"],)),
    (parse_directives, ("#PBS -J 1%²\n", "job.sh")),
    (parse_directives, ("#PBS -l select=²\n", "job.sh")),
    (parse_directives, ('#BSUB -w "done(12[1%²])"\n', "job.sh")),
], ids=["array", "job-id", "pbs-J", "pbs-select", "bsub-w"])
def test_superscript_digit_is_a_usage_error(call, args):
    usage_error(call, *args)


def test_only_ascii_digits_are_numbers():
    assert usage_error(parse_array, "1-10%²").message == "array range '1-10%²' has a bad limit '%²'"
    assert usage_error(parse, "#PBS -l select=²\n").message == "job.sh:1: select=² is not a number of nodes"
    assert usage_error(parse_array, "١-٣").message == "array range '١-٣' does not parse at '١-٣'"
    assert usage_error(parse_duration, "١٢").message == "walltime '١٢' does not parse"
    assert usage_error(parse, "#PBS -l ncpus=٤\n").message == "job.sh:1: ncpus '٤' is not a whole number"
    assert parse("#PBS -l select=01:ncpus=2\n") == Directives(vcpus=2)  # leading zeros are still fine


@pytest.mark.parametrize("call, args", [
    (parse_duration, ("5ſ",)),
    (parse_duration, ("5mın",)),
    (parse_directives, ("#SBATCH -t 5ſ\n", "job.sh")),
    (parse_memory, ("5\u212ab",)),  # Kelvin sign, folds to k
], ids=["long-s", "dotless-i", "sbatch-t", "kelvin-sign"])
def test_unicode_unit_letter_does_not_parse(call, args):
    assert "does not parse" in usage_error(call, *args).message


@pytest.mark.parametrize("call, args, message", [
    (parse_duration, ("9" * 400,), f"walltime '{'9' * 400}' is too large"),
    (parse_duration, ("9" * 400 + "s",), f"walltime '{'9' * 400}s' is too large"),
    (parse_memory, ("9" * 400,), f"memory '{'9' * 400}' is too large"),
], ids=["duration-plain", "duration-suffixed", "memory"])
def test_huge_number_is_too_large(call, args, message):
    assert usage_error(call, *args).message == message


def test_duration_and_memory_limits():
    assert parse_duration("36500d") == 36500 * 86400
    assert usage_error(parse_duration, "36501d").hint == "give at most 36500 days"
    assert usage_error(parse_duration, "36501-0", "m").message == "walltime '36501-0' is too large"
    assert parse_memory("1024pb") == 1024**4
    err = usage_error(parse_memory, "1025pb")
    assert err.message == "memory '1025pb' is too large" and err.hint == "give at most 1024PiB"


@pytest.mark.skipif(sys.get_int_max_str_digits() == 0, reason="int() digit limit is off in this interpreter")
@pytest.mark.parametrize("call, args", [
    (parse_array, ("1" * 4301,)),
    (parse_job_ids, (["1" * 4301],)),
    (parse_duration, ("1" * 4301 + "-1",)),
    (parse_duration, ("1-1:" + "1" * 4301, "m")),
    (parse_directives, ("#PBS -l select=" + "1" * 4301 + "\n", "job.sh")),
    (parse_directives, ("#PBS -l ncpus=" + "1" * 4301 + "\n", "job.sh")),
    (parse_directives, ("#BSUB -gpu num=" + "1" * 4301 + "\n", "job.sh")),
], ids=["array", "job-id", "duration-days", "duration-minutes", "pbs-select", "pbs-ncpus", "bsub-gpu"])
def test_very_long_number_is_a_usage_error(call, args):
    usage_error(call, *args)


def test_long_numbers_in_arrays_and_job_ids():
    assert usage_error(parse_array, "1" * 4301).message == f"array range '{'1' * 4301}' has an index above {MAX_INDEX}"
    assert usage_error(parse_array, "99999999999-5").message == \
        f"array range '99999999999-5' has an index above {MAX_INDEX}"
    assert usage_error(parse_array, f"1-5%{MAX_INDEX + 1}").message == \
        f"array range '1-5%{MAX_INDEX + 1}' has a limit above {MAX_INDEX}"
    assert parse_array("1-5%" + "0" * 5000 + "3") == one(1, 5, limit=3)  # leading zeros do not count
    assert parse_array("1-5:" + "9" * 5000) == one(1)  # a step past the range's end leaves its start
    assert usage_error(parse_job_ids, [str(2**63)]).message == f"job id '{2**63}' is too large"
    assert parse_job_ids([str(2**63 - 1)]) == [JobRef(2**63 - 1)]


@pytest.mark.parametrize("text, expected", [("5-5:3", one(5)), ("1-3:5", one(1)), ("1-10:4", one(1, 9, 4))])
def test_single_index_range_with_step_round_trips(text, expected):
    spec = parse_array(text)
    assert spec == expected
    assert parse_array(spec.text) == spec


@pytest.mark.parametrize("separator", ["\f", "\v", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"])
def test_only_newline_ends_a_line_for_error_numbers(separator):
    err = usage_error(parse, f"#PBS -N ok{separator}\n#PBS -Q bad\n")
    assert err.message == "job.sh:2: PBS option -Q is not known"


def test_crlf_lines_keep_their_numbers():
    assert usage_error(parse, "#PBS -N ok\r\n\r\n#PBS -Q bad\r\n").message == "job.sh:3: PBS option -Q is not known"


@pytest.mark.parametrize("mib, text", [
    (102400, "100GiB"),
    (102912, "100.5GiB"),
    (1048576, "1024GiB"),
    (1024**3, "1048576GiB"),
    (1024**4, "1073741824GiB"),
    (1025, "1.0GiB"),
])
def test_format_memory_of_large_sizes_is_plain(mib, text):
    assert format_memory(mib) == text
    assert "e+" not in text


@FAST
@given(st.integers(1, 10**9).map(lambda g: g * 1024))
def test_large_whole_gib_round_trips_through_format(mib):
    assert parse_memory(format_memory(mib)) == mib


@pytest.mark.parametrize("words, refs", [
    (["12[],13"], [JobRef(12, None, True), JobRef(13)]),
    (["12[1,3],13 14[]"], [JobRef(12, ArraySpec((Range(1, 1), Range(3, 3)))), JobRef(13), JobRef(14, None, True)]),
    (["12_[1-2],13"], [JobRef(12, one(1, 2)), JobRef(13)]),
    (["12[1, 3]"], [JobRef(12, ArraySpec((Range(1, 1), Range(3, 3))))]),
    (["13,12[]"], [JobRef(13), JobRef(12, None, True)]),
])
def test_job_ids_split_on_commas_outside_brackets(words, refs):
    assert parse_job_ids(words) == refs
