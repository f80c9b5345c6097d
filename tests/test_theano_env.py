"""network3.theano_env: network3's Theano defaults, and the user's flags winning."""
import os

from network3 import theano_env
from conftest import run_python

PRINT_CONFIG = ("import network3, theano; c = theano.config; "
                "print(c.floatX, '|', c.blas__ldflags, '|', c.base_compiledir, '|', c.allow_gc)")


def test_bundled_openblas_exists_and_exports_sgemm():
    import ctypes
    lib = theano_env.bundled_openblas()
    assert lib and os.path.exists(lib)
    assert hasattr(ctypes.CDLL(lib), "sgemm_")


def test_blas_choice_system_first_then_scipys(monkeypatch):
    lib = theano_env.bundled_openblas()
    monkeypatch.setattr(theano_env, "system_openblas", lambda: False)
    assert theano_env.blas_ldflags() == "-L%s -l:%s -Wl,-rpath,%s" % (
        os.path.dirname(lib), os.path.basename(lib), os.path.dirname(lib))
    monkeypatch.setattr(theano_env, "system_openblas", lambda: True)
    assert theano_env.blas_ldflags() == "-lopenblas"
    monkeypatch.setattr(theano_env, "system_openblas", lambda: False)
    monkeypatch.setattr(theano_env, "bundled_openblas", lambda: None)
    assert theano_env.blas_ldflags() == ""


def uses_openblas(ldflags):
    return ldflags == "-lopenblas" or "-l:libopenblas" in ldflags


def test_flags_keys_parse_escaped_commas():
    keys = theano_env._flags_keys(r"floatX=float64,blas.ldflags=-L/x -Wl\,-rpath\,/x,device=cpu")
    assert keys == {"floatx", "blas__ldflags", "device"}


def test_compose_skips_taken_keys_and_escapes_commas(monkeypatch):
    monkeypatch.setattr(theano_env, "system_openblas", lambda: False)  # scipy's: has commas
    flags = theano_env.compose_flags("floatX=float64", {"floatx"})
    assert not flags.startswith("floatX=float32")
    assert flags.endswith(",floatX=float64")
    assert "-Wl\\,-rpath\\," in flags


def test_defaults_apply_in_a_clean_environment(tmp_path):
    env = {"THEANO_FLAGS": "", "THEANORC": str(tmp_path / "none"),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = run_python(PRINT_CONFIG, env=env)
    assert result.returncode == 0, result.stderr
    floatx, ldflags, compiledir, allow_gc = (s.strip() for s in result.stdout.split("|"))
    assert floatx == "float32" and allow_gc == "False"
    assert uses_openblas(ldflags)
    assert compiledir == str(tmp_path / "cache" / "network3" / "theano")


def test_user_theano_flags_win(tmp_path):
    env = {"THEANO_FLAGS": "floatX=float64,allow_gc=True,base_compiledir=%s" % (tmp_path / "mine"),
           "THEANORC": str(tmp_path / "none")}
    result = run_python(PRINT_CONFIG, env=env)
    assert result.returncode == 0, result.stderr
    floatx, ldflags, compiledir, allow_gc = (s.strip() for s in result.stdout.split("|"))
    assert floatx == "float64" and compiledir == str(tmp_path / "mine") and allow_gc == "True"
    assert uses_openblas(ldflags)  # what the user left unset is still network3's


def test_user_theanorc_wins(tmp_path):
    rc = tmp_path / "theanorc"
    rc.write_text("[global]\nfloatX = float64\n")
    result = run_python(PRINT_CONFIG, env={"THEANO_FLAGS": "", "THEANORC": str(rc)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("|")[0].strip() == "float64"


def test_known_noise_filtered_real_warnings_kept():
    code = ("import network3, logging; log = logging.getLogger('theano.tensor.blas'); "
            "log.warning('We did not find a dynamic library in the library_dir of the library'); "
            "log.warning('a real problem')")
    result = run_python(code)
    assert "a real problem" in result.stderr
    assert "did not find a dynamic library" not in result.stderr


def test_info_command_shows_openblas_and_data(mnist):
    result = run_python(["-m", "network3", "info"])
    assert result.returncode == 0, result.stderr
    blas = [line for line in result.stdout.splitlines() if line.startswith("blas ")]
    assert "openblas" in blas[0].lower() and "fallback" not in blas[0]
    assert "floatX" in result.stdout and "float32" in result.stdout
    assert "SHA-256 verified" in result.stdout
    assert any(line.split() == ["C", "ops", "on"] for line in result.stdout.splitlines())
    off = run_python(["-m", "network3", "info"], env={"NETWORK3_C_OPS": "0"})
    assert "off (NETWORK3_C_OPS=0)" in off.stdout
