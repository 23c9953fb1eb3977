"""The base classes: what a subclass must provide, and the errors when it does not."""

from __future__ import annotations

import pytest

import fastlane
from fastlane import Pipeline, Source, Target, Transform
from fastlane.utils import classproperty


def test_public_api_has_the_original_names():
    from fastlane.pipeline import Pipeline as P
    from fastlane.run_pipeline import driver, main
    from fastlane.source import Source as S, SourceConfigSchema
    from fastlane.target import Target as T, TargetConfigSchema
    from fastlane.transform import Transform as X, TransformConfigSchema
    from fastlane.utils import classproperty as cp, get_secret

    assert (P, S, T, X, cp) == (Pipeline, Source, Target, Transform, classproperty)
    assert callable(driver) and callable(main) and callable(get_secret)
    assert SourceConfigSchema and TargetConfigSchema and TransformConfigSchema
    assert fastlane.__version__


def test_extract_with_too_many_parameters_is_a_type_error():
    with pytest.raises(TypeError, match=r"extract.*expected extract\(self\) or extract\(self, i\)"):

        class Bad(Source):
            source_type = "bad"

            def extract(self, i, j):
                return []


def test_extract_may_take_the_worker_index_or_nothing():
    class A(Source):
        source_type = "a_src"

        def extract(self):
            return []

    class B(Source):
        source_type = "b_src"

        def extract(self, i):
            return []

    assert A and B


def test_transform_needs_one_frame_parameter():
    with pytest.raises(TypeError, match=r"transform\(self, df\)"):

        class Bad(Transform):
            transform_type = "bad"

            def transform(self):
                return None


def test_load_and_get_offset_signatures_are_checked():
    with pytest.raises(TypeError, match=r"load\(self, df\)"):

        class BadLoad(Target):
            target_type = "bad"

            def load(self, df, extra):
                pass

    with pytest.raises(TypeError, match=r"get_offset\(self\)"):

        class BadOffset(Target):
            target_type = "bad"

            def load(self, df):
                pass

            def get_offset(self, table):
                return None


def test_keyword_only_required_parameter_is_rejected():
    with pytest.raises(TypeError, match="keyword-only parameter `df`"):

        class Bad(Target):
            target_type = "bad"

            def load(self, *, df):
                pass


def test_static_method_is_rejected():
    with pytest.raises(TypeError, match="plain method"):

        class Bad(Source):
            source_type = "bad"

            @staticmethod
            def extract():
                return []


def test_unknown_frame_type_is_rejected():
    with pytest.raises(TypeError, match="frame_type must be one of pandas, polars, pyarrow"):

        class Bad(Transform):
            transform_type = "bad"
            frame_type = "excel"

            def transform(self, df):
                return df


def test_missing_extract_cannot_be_instantiated():
    class NoExtract(Source):
        source_type = "none"

    with pytest.raises(TypeError, match="abstract"):
        NoExtract({})


def test_source_type_as_classproperty_like_the_original():
    class Legacy(Source):
        @classproperty
        def source_type(cls):
            return "legacy_src"

        def extract(self):
            return []

    assert Legacy.source_type == "legacy_src"
    from fastlane._component import REGISTRY

    assert REGISTRY["source"]["legacy_src"] is Legacy


def test_a_class_without_a_type_name_cannot_be_used():
    class Nameless(Source):
        def extract(self):
            return []

    with pytest.raises(TypeError, match="does not define `source_type`"):
        Pipeline(source=Nameless, target="file", configuration={})


def test_something_else_than_a_component_is_rejected():
    with pytest.raises(TypeError, match="source must be a plugin id"):
        Pipeline(source=42, target="file", configuration={})
    with pytest.raises(TypeError, match="must be a Target subclass"):
        Pipeline(source="file", target=dict, configuration={})
